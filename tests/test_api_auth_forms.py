"""API authentication as developers try it: a bare key (the docs' Authorize
box), X-Api-Key, challenges and messages that fit the case, every bad filter
reported, and /api/v1/access/ with a trailing slash."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase, override_settings

from tests.api_helpers import JWT_SECRET, bearer_header, user_token
from tests.factories import api_key, approve, make_institution, make_server

ACCESS = "/api/v1/access"
SERVERS = "/api/v1/servers/"


@override_settings(UPLOADER_JWT_SECRET=JWT_SECRET)
class KeyFormsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        server = make_server(make_institution("University Hospital"), "Main PACS")
        approve(server, "jane@uni.edu")
        _, cls.access_key = api_key("uploader", scope="access")
        _, cls.manage_key = api_key("script", scope="manage")

    def ask(self, **headers: str):  # type: ignore[no-untyped-def]
        return self.client.get(ACCESS, {"email": "jane@uni.edu"}, **headers)

    def test_a_bare_key_in_authorization_works(self) -> None:
        response = self.ask(HTTP_AUTHORIZATION=self.access_key)
        assert response.status_code == 200
        assert [s["name"] for s in response.json()["servers"]] == ["Main PACS"]
        listing = self.client.get(SERVERS, HTTP_AUTHORIZATION=self.manage_key)
        assert listing.status_code == 200

    def test_x_api_key_works(self) -> None:
        assert self.ask(HTTP_X_API_KEY=self.access_key).status_code == 200
        listing = self.client.get(SERVERS, HTTP_X_API_KEY=self.manage_key)
        assert listing.status_code == 200

    def test_a_malformed_x_api_key_is_a_401_that_says_so(self) -> None:
        response = self.ask(HTTP_X_API_KEY="two words")
        assert response.status_code == 401
        assert "X-Api-Key" in response.json()["detail"]

    def test_a_wrong_bare_key_is_refused(self) -> None:
        wrong = self.access_key[:-4] + "AAAA"
        response = self.ask(HTTP_AUTHORIZATION=wrong)
        assert response.status_code == 401
        assert response.json()["detail"] == "Invalid, revoked or expired key."

    def test_no_credentials_says_how_to_send_a_key(self) -> None:
        response = self.ask()
        assert response.status_code == 401
        detail = response.json()["detail"]
        assert "Authorization: Api-Key <key>" in detail and "X-Api-Key" in detail
        assert response["WWW-Authenticate"] == "Api-Key"

    def test_the_management_api_says_how_to_send_a_key_too(self) -> None:
        response = self.client.get(SERVERS)
        assert response.status_code == 401
        assert "Authorization: Api-Key <key>" in response.json()["detail"]
        assert response["WWW-Authenticate"] == "Api-Key"

    def test_a_refused_bearer_token_is_challenged_as_a_bearer_token(self) -> None:
        bad = bearer_header(user_token("jane@uni.edu", secret="another-secret-" * 4))
        for response in (
            self.client.get(ACCESS, **bad),
            self.client.get(SERVERS, **bad),
        ):
            assert response.status_code == 401
            assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    def test_an_access_key_reading_the_registry_is_told_what_its_scope_allows(
        self,
    ) -> None:
        response = self.client.get(SERVERS, HTTP_AUTHORIZATION=self.access_key)
        assert response.status_code == 403
        detail = response.json()["detail"]
        assert "scope 'access'" in detail and "GET /api/v1/access" in detail

    def test_a_user_token_on_the_management_api_is_told_what_it_may_do(self) -> None:
        response = self.client.get(SERVERS, **bearer_header(user_token("jane@uni.edu")))
        assert response.status_code == 403
        assert (
            "user token may only ask the access question" in (response.json()["detail"])
        )

    def test_staff_without_the_permission_are_told_which(self) -> None:
        clerk = get_user_model().objects.create_user(
            "clerk", password="pw", is_staff=True
        )
        self.client.force_login(clerk)
        response = self.client.get(SERVERS)
        assert response.status_code == 403
        assert "permission to view" in response.json()["detail"]


class FilterErrorsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        _, cls.key = api_key("script", scope="manage")

    def test_two_bad_filters_are_both_reported(self) -> None:
        response = self.client.get(
            SERVERS,
            {"institution": "abc", "status": "sleeping"},
            HTTP_AUTHORIZATION=f"Api-Key {self.key}",
        )
        assert response.status_code == 400
        body = response.json()
        assert "“abc”" in body["institution"][0]
        assert "“sleeping”" in body["status"][0]


class TrailingSlashTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        server = make_server(make_institution("University Hospital"), "Main PACS")
        approve(server, "jane@uni.edu")
        _, cls.key = api_key("uploader", scope="access")

    def test_the_slash_answers_as_without(self) -> None:
        headers = {"HTTP_AUTHORIZATION": f"Api-Key {self.key}"}
        plain = self.client.get(ACCESS, {"email": "jane@uni.edu"}, **headers)
        slash = self.client.get(ACCESS + "/", {"email": "jane@uni.edu"}, **headers)
        assert slash.status_code == plain.status_code == 200
        assert slash.json() == plain.json()
        assert slash["ETag"] == plain["ETag"]
        again = self.client.get(
            ACCESS + "/",
            {"email": "jane@uni.edu"},
            HTTP_IF_NONE_MATCH=plain["ETag"],
            **headers,
        )
        assert again.status_code == 304

    def test_the_slash_gets_the_uploaders_cors_headers(self) -> None:
        response = self.client.options(
            ACCESS + "/",
            HTTP_ORIGIN="https://pacsbin.com",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        )
        assert response["Access-Control-Allow-Origin"] == "https://pacsbin.com"

    def test_without_credentials_the_slash_is_a_401_too(self) -> None:
        assert (
            self.client.get(ACCESS + "/", {"email": "jane@uni.edu"}).status_code == 401
        )
