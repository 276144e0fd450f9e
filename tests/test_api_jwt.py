"""Bearer user tokens minted by the uploader's backend (HS256 JWT)."""

from __future__ import annotations

import base64
import json
import time
import warnings

import jwt
from django.test import TestCase, override_settings

from integrations.models import Institution
from tests.api_helpers import (
    JWT_SECRET,
    bearer_header,
    user_token,
)
from tests.factories import (
    server,
)

URL = "/api/v1/access"
JANE = "jane.doe@university.example"


def part_bytes(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@override_settings(UPLOADER_JWT_SECRET=JWT_SECRET, ACCESS_THROTTLE_RATE=None)
class BearerTokenTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(institution, "PACS", emails=[JANE])
        server(institution, "Other", emails=["other@university.example"])

    def ask(self, token: str, **params: str):
        return self.client.get(URL, params, **bearer_header(token))

    def assert_refused(self, token: str, message: str) -> None:
        response = self.ask(token)
        self.assertEqual(response.status_code, 401)
        self.assertIn(message, response.json()["detail"])
        # A refused user token is challenged as one (RFC 6750), not as a key.
        self.assertEqual(response["WWW-Authenticate"], 'Bearer error="invalid_token"')

    def test_a_valid_token_answers_for_its_own_email(self) -> None:
        response = self.ask(user_token(JANE))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["email"], JANE)
        self.assertEqual([s["id"] for s in response.json()["servers"]], [self.pacs.pk])

    def test_the_token_email_is_normalised_and_matched_ignoring_case(self) -> None:
        response = self.ask(user_token(" Jane.Doe@UNIVERSITY.example "))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()["servers"]), 1)

    def test_asking_about_the_own_email_explicitly_is_fine(self) -> None:
        response = self.ask(user_token(JANE), email="JANE.DOE@university.example")
        self.assertEqual(response.status_code, 200)

    def test_asking_about_another_email_is_a_403_and_reveals_nothing(self) -> None:
        response = self.ask(user_token(JANE), email="other@university.example")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(
            response.json(),
            {"detail": "A Bearer token may only ask about its own email."},
        )

    def test_asking_with_a_malformed_email_parameter_is_a_403(self) -> None:
        self.assertEqual(self.ask(user_token(JANE), email="nonsense").status_code, 403)

    def test_an_expired_token_is_a_401(self) -> None:
        self.assert_refused(
            user_token(JANE, exp=int(time.time()) - 120), "The token has expired."
        )

    def test_a_token_expired_within_the_leeway_still_works(self) -> None:
        response = self.ask(user_token(JANE, exp=int(time.time()) - 5))
        self.assertEqual(response.status_code, 200)

    def test_a_token_without_exp_is_a_401(self) -> None:
        self.assert_refused(user_token(JANE, exp=None), "exp")

    def test_a_token_without_iat_is_a_401(self) -> None:
        self.assert_refused(user_token(JANE, iat=None), "iat")

    def test_a_token_living_longer_than_the_maximum_is_a_401(self) -> None:
        now = int(time.time())
        token = user_token(JANE, iat=now, exp=now + 86400 + 1)
        self.assert_refused(token, "lives longer than 86400 seconds")

    def test_a_token_living_exactly_the_maximum_works(self) -> None:
        now = int(time.time())
        response = self.ask(user_token(JANE, iat=now, exp=now + 86400))
        self.assertEqual(response.status_code, 200)

    @override_settings(UPLOADER_JWT_MAX_LIFETIME=600)
    def test_the_maximum_lifetime_is_a_setting(self) -> None:
        now = int(time.time())
        self.assert_refused(
            user_token(JANE, iat=now, exp=now + 601), "longer than 600 seconds"
        )
        self.assertEqual(
            self.ask(user_token(JANE, iat=now, exp=now + 600)).status_code, 200
        )

    def test_a_token_issued_in_the_future_is_a_401(self) -> None:
        now = int(time.time())
        self.assert_refused(
            user_token(JANE, iat=now + 3600, exp=now + 3700), "not yet valid"
        )

    def test_a_token_issued_within_the_leeway_in_the_future_works(self) -> None:
        now = int(time.time())
        response = self.ask(user_token(JANE, iat=now + 10, exp=now + 300))
        self.assertEqual(response.status_code, 200)

    def test_an_absurd_expiry_is_a_401_not_a_500(self) -> None:
        now = int(time.time())
        for exp in [10**30, 10**400, 1e300, "9" * 5000]:
            with self.subTest(exp=str(exp)[:20]):
                self.assert_refused(user_token(JANE, iat=now, exp=exp), "Invalid token")

    def test_non_finite_or_odd_numbers_are_a_401_not_a_500(self) -> None:
        def part(data: str) -> str:
            return base64.urlsafe_b64encode(data.encode()).rstrip(b"=").decode()

        header = part('{"alg":"HS256","typ":"JWT"}')
        now = int(time.time())
        for exp, iat in [
            ("Infinity", str(now)),
            ("NaN", str(now)),
            ("-Infinity", str(now)),
            (str(now + 60), "Infinity"),
            (str(now + 60), "true"),
            ("1e999", str(now)),
        ]:
            with self.subTest(exp=exp, iat=iat):
                body = part(
                    f'{{"email":"{JANE}","aud":"pacsbin-integrations",'
                    f'"iat":{iat},"exp":{exp}}}'
                )
                signing = f"{header}.{body}".encode()
                signature = jwt.api_jws.get_algorithm_by_name("HS256").sign(
                    signing, JWT_SECRET.encode()
                )
                token = f"{header}.{body}.{part_bytes(signature)}"
                self.assert_refused(token, "Invalid token")

    def test_a_token_without_email_is_a_401(self) -> None:
        token = jwt.encode(
            {
                "aud": "pacsbin-integrations",
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
            },
            JWT_SECRET,
            algorithm="HS256",
        )
        self.assert_refused(token, "email")

    def test_a_token_with_an_invalid_email_is_a_401(self) -> None:
        self.assert_refused(user_token("not-an-email"), "not-an-email")

    def test_a_wrong_audience_is_a_401(self) -> None:
        self.assert_refused(user_token(JANE, aud="someone-else"), "Audience")

    def test_a_missing_audience_is_a_401(self) -> None:
        self.assert_refused(user_token(JANE, aud=None), "aud")

    def test_a_wrong_secret_is_a_401(self) -> None:
        self.assert_refused(
            user_token(JANE, secret="another-secret-0123456789abcdef0123"), "Signature"
        )

    def test_alg_none_is_a_401(self) -> None:
        def part(data: dict) -> str:
            raw = json.dumps(data).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        claims = {
            "email": JANE,
            "aud": "pacsbin-integrations",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        }
        for alg in ["none", "None", "NONE"]:
            with self.subTest(alg=alg):
                token = f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."
                self.assert_refused(token, "Invalid token")

    def test_another_algorithm_with_the_same_secret_is_a_401(self) -> None:
        # PyJWT warns that the shared secret is short for HS512: that is the
        # point, the token is signed with the registry's own secret.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            token = jwt.encode(
                {
                    "email": JANE,
                    "aud": "pacsbin-integrations",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                },
                JWT_SECRET,
                algorithm="HS512",
            )
        self.assert_refused(token, "alg value is not allowed")

    def test_a_garbled_token_is_a_401(self) -> None:
        self.assert_refused("not.a.token", "Invalid token")

    def test_an_empty_bearer_header_is_a_401(self) -> None:
        response = self.client.get(URL, HTTP_AUTHORIZATION="Bearer ")
        self.assertEqual(response.status_code, 401)

    def test_a_token_cannot_use_the_management_api(self) -> None:
        response = self.client.get(
            "/api/v1/servers/", **bearer_header(user_token(JANE))
        )
        self.assertEqual(response.status_code, 403)


@override_settings(UPLOADER_JWT_SECRET="", ACCESS_THROTTLE_RATE=None)
class BearerTokensOffTests(TestCase):
    def test_every_token_is_refused_while_the_secret_is_unset(self) -> None:
        response = self.client.get(URL, **bearer_header(user_token(JANE)))
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response.json(),
            {"detail": "Bearer tokens are not accepted by this registry."},
        )
