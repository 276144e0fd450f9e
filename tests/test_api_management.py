"""The management API: institutions, servers, approved users."""

from __future__ import annotations

import json
from unittest import mock

from django.contrib.auth.models import Permission, User
from django.db import IntegrityError
from django.test import Client, TestCase, override_settings

from integrations.models import ApprovedUser, DicomWebServer, Institution
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    server,
)

ACTOR = "api-key:deploy-bot"


class ManagementTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("deploy-bot", "manage")
        cls.hospital = Institution.objects.create(
            name="University Hospital", contact_email="it@university.example"
        )
        cls.pacs = server(cls.hospital, "PACS", emails=["jane@university.example"])

    def get(self, path: str, params: dict | None = None):
        return self.client.get(path, params or {}, **key_header(self.raw))

    def post(self, path: str, data: object):
        return self.client.post(
            path,
            json.dumps(data),
            content_type="application/json",
            **key_header(self.raw),
        )

    def patch(self, path: str, data: object):
        return self.client.patch(
            path,
            json.dumps(data),
            content_type="application/json",
            **key_header(self.raw),
        )

    def delete(self, path: str):
        return self.client.delete(path, **key_header(self.raw))


class ManagementAuthTests(ManagementTestCase):
    def test_no_credentials_is_a_401(self) -> None:
        for path in ["/api/v1/institutions/", "/api/v1/servers/"]:
            with self.subTest(path=path):
                self.assertEqual(self.client.get(path).status_code, 401)

    def test_an_access_key_is_a_403_and_changes_nothing(self) -> None:
        _key, raw = api_key("uploader", "access")
        response = self.client.post(
            "/api/v1/institutions/",
            {"name": "New"},
            content_type="application/json",
            **key_header(raw),
        )
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Institution.objects.filter(name="New").exists())
        self.assertEqual(
            self.client.get("/api/v1/servers/", **key_header(raw)).status_code, 403
        )

    def test_a_revoked_manage_key_is_a_401(self) -> None:
        self.key.revoke()
        self.assertEqual(self.get("/api/v1/servers/").status_code, 401)

    def test_a_staff_session_with_permissions_may_manage(self) -> None:
        staff = User.objects.create_user("staff", password="x", is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(
                codename__in=["view_institution", "add_institution"]
            )
        )
        client = Client()
        client.force_login(staff)
        self.assertEqual(client.get("/api/v1/institutions/").status_code, 200)
        response = client.post(
            "/api/v1/institutions/",
            {"name": "Staff Made"},
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 201)
        history = Institution.history.filter(name="Staff Made").get()
        self.assertEqual(history.history_actor, "staff")
        self.assertEqual(history.history_user, staff)

    def test_a_staff_session_without_the_permission_is_a_403(self) -> None:
        staff = User.objects.create_user("viewer", password="x", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_institution"))
        client = Client()
        client.force_login(staff)
        response = client.post(
            "/api/v1/institutions/", {"name": "Nope"}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Institution.objects.filter(name="Nope").exists())
        self.assertEqual(client.get("/api/v1/servers/").status_code, 403)

    def test_a_session_needs_a_csrf_token_to_change_anything(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(User.objects.create_superuser("root", "r@x.example", "p"))
        response = client.post(
            "/api/v1/institutions/", {"name": "Forged"}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["detail"])
        self.assertFalse(Institution.objects.filter(name="Forged").exists())

    def test_a_non_staff_session_is_a_403(self) -> None:
        client = Client()
        client.force_login(User.objects.create_user("user", password="x"))
        self.assertEqual(client.get("/api/v1/institutions/").status_code, 403)


class InstitutionApiTests(ManagementTestCase):
    URL = "/api/v1/institutions/"

    def test_the_list_is_paginated_with_the_contract_shape(self) -> None:
        response = self.get(self.URL)
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(set(body), {"count", "next", "previous", "results"})
        self.assertEqual(
            body["results"],
            [
                {
                    "id": self.hospital.pk,
                    "name": "University Hospital",
                    "contact_name": "",
                    "contact_email": "it@university.example",
                    "notes": "",
                }
            ],
        )

    def test_pages_and_page_size(self) -> None:
        for number in range(5):
            Institution.objects.create(name=f"Clinic {number}")
        body = self.get(self.URL, {"page_size": 2, "page": 2}).json()
        self.assertEqual(body["count"], 6)
        self.assertEqual(len(body["results"]), 2)
        self.assertIsNotNone(body["next"])
        self.assertIsNotNone(body["previous"])

    def test_a_bad_page_size_is_a_400_naming_it(self) -> None:
        for value in ["abc", "0", "-1", "²"]:
            with self.subTest(value=value):
                response = self.get(self.URL, {"page_size": value})
                self.assertEqual(response.status_code, 400)
                self.assertIn(value, response.json()["page_size"][0])

    def test_a_huge_page_size_is_capped(self) -> None:
        for number in range(3):
            Institution.objects.create(name=f"Clinic {number}")
        response = self.get(self.URL, {"page_size": 10**9})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()["results"]), 4)

    def test_search_finds_by_part_of_the_name_ignoring_case(self) -> None:
        Institution.objects.create(name="County General")
        body = self.get(self.URL, {"search": "COUNTY"}).json()
        self.assertEqual([i["name"] for i in body["results"]], ["County General"])

    def test_create_answers_201_and_writes_with_the_key_as_actor(self) -> None:
        response = self.post(
            self.URL,
            {
                "name": "  County   General ",
                "contact_name": "Ben",
                "contact_email": "Ben.IT@CountyGeneral.example",
                "notes": "via API",
            },
        )
        self.assertEqual(response.status_code, 201)
        created = Institution.objects.get(pk=response.json()["id"])
        self.assertEqual(created.name, "County General")
        self.assertEqual(created.contact_email, "Ben.IT@countygeneral.example")
        self.assertEqual(
            response.json()["contact_email"], "Ben.IT@countygeneral.example"
        )
        self.assertEqual(created.history.get().history_actor, ACTOR)

    def test_a_duplicate_name_ignoring_case_is_a_400_naming_it(self) -> None:
        response = self.post(self.URL, {"name": "UNIVERSITY hospital"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("UNIVERSITY hospital", response.json()["name"][0])
        self.assertEqual(Institution.objects.count(), 1)

    def test_a_duplicate_that_races_past_validation_is_a_400_not_a_500(self) -> None:
        with mock.patch.object(Institution, "validate_constraints"):
            response = self.post(self.URL, {"name": "university HOSPITAL"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("university HOSPITAL", response.json()["name"][0])
        self.assertEqual(Institution.objects.count(), 1)

    def test_invalid_input_is_a_400_per_field(self) -> None:
        response = self.post(self.URL, {"name": "", "contact_email": "not-mail"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.json()), {"name", "contact_email"})
        self.assertIn("not-mail", response.json()["contact_email"][0])

    def test_malformed_json_is_a_400(self) -> None:
        response = self.client.post(
            self.URL, "{nope", content_type="application/json", **key_header(self.raw)
        )
        self.assertEqual(response.status_code, 400)

    def test_patch_changes_only_the_given_fields_with_the_key_as_actor(self) -> None:
        response = self.patch(f"{self.URL}{self.hospital.pk}/", {"notes": "Updated"})
        self.assertEqual(response.status_code, 200)
        self.hospital.refresh_from_db()
        self.assertEqual(self.hospital.notes, "Updated")
        self.assertEqual(self.hospital.name, "University Hospital")
        self.assertEqual(self.hospital.history.first().history_actor, ACTOR)

    def test_renaming_to_its_own_name_in_another_case_is_fine(self) -> None:
        response = self.patch(
            f"{self.URL}{self.hospital.pk}/", {"name": "UNIVERSITY HOSPITAL"}
        )
        self.assertEqual(response.status_code, 200)

    def test_put_is_not_offered(self) -> None:
        response = self.client.put(
            f"{self.URL}{self.hospital.pk}/",
            json.dumps({"name": "X"}),
            content_type="application/json",
            **key_header(self.raw),
        )
        self.assertEqual(response.status_code, 405)

    def test_deleting_an_institution_with_servers_is_a_409_naming_the_count(
        self,
    ) -> None:
        server(self.hospital, "Second")
        response = self.delete(f"{self.URL}{self.hospital.pk}/")
        self.assertEqual(response.status_code, 409)
        self.assertIn("still has 2 DICOMweb server(s)", response.json()["detail"])
        self.assertTrue(Institution.objects.filter(pk=self.hospital.pk).exists())

    def test_deleting_an_empty_institution_answers_204(self) -> None:
        empty = Institution.objects.create(name="Empty")
        response = self.delete(f"{self.URL}{empty.pk}/")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(Institution.objects.filter(pk=empty.pk).exists())
        deletion = Institution.history.filter(id=empty.pk, history_type="-").get()
        self.assertEqual(deletion.history_actor, ACTOR)

    def test_an_unknown_or_huge_id_is_a_404(self) -> None:
        for pk in [999999, 10**30]:
            with self.subTest(pk=pk):
                self.assertEqual(self.get(f"{self.URL}{pk}/").status_code, 404)


class ServerApiTests(ManagementTestCase):
    URL = "/api/v1/servers/"

    def new_server(self, **fields: object) -> dict:
        data = {
            "institution": self.hospital.pk,
            "name": "Research Archive",
            "qido_url": "HTTPS://Research.University.example/qido/",
            "wado_url": "https://research.university.example/wado",
        }
        data.update(fields)
        return data

    def test_a_server_has_the_contract_shape(self) -> None:
        response = self.get(f"{self.URL}{self.pacs.pk}/")
        self.assertEqual(
            response.json(),
            {
                "id": self.pacs.pk,
                "institution": self.hospital.pk,
                "name": "PACS",
                "qido_url": "https://pacs.example/dicomweb",
                "wado_url": "https://pacs.example/wado",
                "status": "active",
                "cors_mode": "direct",
                "needs_credentials": False,
                "pacsbin_proxy": None,
                "edge_enforced": False,
                "notes": "",
            },
        )

    def test_create_normalises_urls_and_applies_defaults(self) -> None:
        response = self.post(self.URL, self.new_server())
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual(body["qido_url"], "https://research.university.example/qido")
        self.assertEqual(body["status"], "pending")
        self.assertEqual(body["cors_mode"], "direct")
        self.assertIs(body["needs_credentials"], False)
        created = DicomWebServer.objects.get(pk=body["id"])
        self.assertEqual(created.qido_url, "https://research.university.example/qido")
        self.assertEqual(created.history.get().history_actor, ACTOR)

    def test_a_bad_url_is_a_400_naming_it_and_nothing_is_written(self) -> None:
        for url in [
            "ftp://pacs.example/dicomweb",
            "https://user:pw@pacs.example/dicomweb",
            "https://pacs.example/dicomweb#x",
            "/relative",
        ]:
            with self.subTest(url=url):
                response = self.post(self.URL, self.new_server(qido_url=url))
                self.assertEqual(response.status_code, 400)
                self.assertIn(url, response.json()["qido_url"][0])
        self.assertEqual(DicomWebServer.objects.count(), 1)

    def test_an_unknown_institution_is_a_400_naming_it(self) -> None:
        for value, expected in [
            (99999, "99999"),
            ("abc", "abc"),
            (10**30, "no institution"),
        ]:
            with self.subTest(value=value):
                response = self.post(self.URL, self.new_server(institution=value))
                self.assertEqual(response.status_code, 400)
                self.assertIn(expected, response.json()["institution"][0])

    def test_needs_credentials_can_be_set_and_read(self) -> None:
        response = self.patch(f"{self.URL}{self.pacs.pk}/", {"needs_credentials": True})
        self.assertEqual(response.status_code, 200)
        self.assertIs(response.json()["needs_credentials"], True)
        self.pacs.refresh_from_db()
        self.assertTrue(self.pacs.needs_credentials)
        self.assertIn(
            "Allow-Credentials",
            self.get(f"{self.URL}{self.pacs.pk}/proxy-config/nginx").content.decode(),
        )

    def test_needs_credentials_that_is_not_a_boolean_is_a_400_naming_it(self) -> None:
        response = self.patch(
            f"{self.URL}{self.pacs.pk}/", {"needs_credentials": "maybe"}
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("maybe", response.json()["needs_credentials"][0])
        self.pacs.refresh_from_db()
        self.assertFalse(self.pacs.needs_credentials)

    def test_a_bad_choice_is_a_400(self) -> None:
        response = self.post(
            self.URL, self.new_server(status="live", cors_mode="magic")
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.json()), {"status", "cors_mode"})

    def test_a_duplicate_name_in_the_institution_is_a_400_naming_it(self) -> None:
        response = self.post(self.URL, self.new_server(name="pacs"))
        self.assertEqual(response.status_code, 400)
        self.assertIn("pacs", response.json()["name"][0])
        other = Institution.objects.create(name="Other")
        response = self.post(
            self.URL, self.new_server(name="PACS", institution=other.pk)
        )
        self.assertEqual(response.status_code, 201)

    def test_a_duplicate_that_races_past_validation_is_a_400_not_a_500(self) -> None:
        with mock.patch.object(DicomWebServer, "validate_constraints"):
            response = self.post(self.URL, self.new_server(name="Pacs"))
        self.assertEqual(response.status_code, 400)
        self.assertIn("Pacs", response.json()["name"][0])

    def test_another_integrity_error_in_a_race_is_a_409_not_a_500(self) -> None:
        # E.g. the institution deleted between validation and the insert.
        with mock.patch.object(
            DicomWebServer, "save", side_effect=IntegrityError("FOREIGN KEY failed")
        ):
            response = self.post(self.URL, self.new_server())
        self.assertEqual(response.status_code, 409)
        self.assertIn("try again", response.json()["detail"])
        self.assertEqual(DicomWebServer.objects.count(), 1)

    def test_filters_by_institution_and_status(self) -> None:
        other = Institution.objects.create(name="Other")
        pending = server(other, "Pending", status="pending")
        server(other, "Active")
        by_institution = self.get(self.URL, {"institution": other.pk}).json()
        self.assertEqual(by_institution["count"], 2)
        both = self.get(self.URL, {"institution": other.pk, "status": "pending"}).json()
        self.assertEqual([s["id"] for s in both["results"]], [pending.pk])
        active = self.get(self.URL, {"status": "active"}).json()
        self.assertEqual(active["count"], 2)

    def test_a_bad_filter_value_is_a_400_naming_it(self) -> None:
        response = self.get(self.URL, {"status": "live"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("live", response.json()["status"][0])
        response = self.get(self.URL, {"institution": "first"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("first", response.json()["institution"][0])

    def test_patch_status_is_audited_and_changes_the_access_answer(self) -> None:
        access = "/api/v1/access?email=jane@university.example"
        with override_settings(ACCESS_THROTTLE_RATE=None):
            tag = self.client.get(access, **key_header(self.raw))["ETag"]
            response = self.patch(f"{self.URL}{self.pacs.pk}/", {"status": "suspended"})
            self.assertEqual(response.status_code, 200)
            after = self.client.get(
                access, HTTP_IF_NONE_MATCH=tag, **key_header(self.raw)
            )
        self.assertEqual(after.status_code, 200)
        self.assertEqual(after.json()["servers"], [])
        self.assertEqual(self.pacs.history.first().history_actor, ACTOR)

    def test_delete_removes_the_server_and_its_approvals(self) -> None:
        response = self.delete(f"{self.URL}{self.pacs.pk}/")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(DicomWebServer.objects.exists())
        self.assertFalse(ApprovedUser.objects.exists())
        removal = ApprovedUser.history.filter(history_type="-").get()
        self.assertEqual(removal.history_actor, ACTOR)


class ApprovedUserApiTests(ManagementTestCase):
    def url(self, suffix: str = "") -> str:
        return f"/api/v1/servers/{self.pacs.pk}/approved-users/{suffix}"

    def emails(self) -> list[str]:
        return sorted(self.pacs.approved_users.values_list("email", flat=True))

    def test_the_list_is_paginated_and_searchable(self) -> None:
        self.post(self.url(), {"emails": ["a.b@x.example", "c.d@y.example"]})
        body = self.get(self.url()).json()
        self.assertEqual(body["count"], 3)
        self.assertEqual(
            set(body["results"][0]),
            {"id", "email", "created_at", "expires_at", "last_used_at"},
        )
        found = self.get(self.url(), {"search": "D@Y.EX"}).json()
        self.assertEqual([u["email"] for u in found["results"]], ["c.d@y.example"])

    def test_bulk_add_answers_added_and_existing_in_normalised_form(self) -> None:
        response = self.post(
            self.url(),
            {
                "emails": [
                    " Jane@UNIVERSITY.example",
                    "New.One@University.Example",
                    "new.one@university.example",
                ]
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.json(),
            {
                "added": ["New.One@university.example"],
                "existing": ["Jane@university.example"],
            },
        )
        self.assertEqual(
            self.emails(), ["New.One@university.example", "jane@university.example"]
        )
        history = ApprovedUser.history.filter(email="New.One@university.example").get()
        self.assertEqual(history.history_actor, ACTOR)

    def test_bulk_add_with_bad_lines_writes_nothing_and_names_each(self) -> None:
        response = self.post(
            self.url(), {"emails": ["good@x.example", "bad@", "also bad", 42, None]}
        )
        self.assertEqual(response.status_code, 400)
        errors = response.json()["emails"]
        self.assertEqual(len(errors), 4)
        for position, value in [(2, "bad@"), (3, "also bad"), (4, "42"), (5, "null")]:
            self.assertTrue(
                any(e.startswith(f"Item {position}") and value in e for e in errors),
                errors,
            )
        self.assertEqual(self.emails(), ["jane@university.example"])

    def test_bulk_add_refuses_an_empty_or_wrong_body(self) -> None:
        for body in [{"emails": []}, {"emails": "a@b.example"}, {}, ["a@b.example"]]:
            with self.subTest(body=body):
                self.assertEqual(self.post(self.url(), body).status_code, 400)

    def test_an_unknown_server_is_a_404(self) -> None:
        response = self.post(
            "/api/v1/servers/999999/approved-users/", {"emails": ["a@b.example"]}
        )
        self.assertEqual(response.status_code, 404)
        self.assertEqual(
            self.get("/api/v1/servers/999999/approved-users/").status_code, 404
        )

    def test_delete_removes_one_matching_ignoring_case(self) -> None:
        response = self.delete(self.url("JANE%40University.Example"))
        self.assertEqual(response.status_code, 204)
        self.assertEqual(self.emails(), [])
        removal = ApprovedUser.history.filter(history_type="-").get()
        self.assertEqual(removal.history_actor, ACTOR)

    def test_delete_takes_plus_and_at_in_the_path(self) -> None:
        self.post(self.url(), {"emails": ["dr+tag@clinic.example"]})
        response = self.delete(self.url("dr+tag@clinic.example"))
        self.assertEqual(response.status_code, 204)
        self.assertEqual(self.emails(), ["jane@university.example"])

    def test_delete_of_an_email_not_approved_is_a_404_naming_it(self) -> None:
        response = self.delete(self.url("nobody@university.example"))
        self.assertEqual(response.status_code, 404)
        self.assertIn("nobody@university.example", response.json()["detail"])

    def test_delete_of_a_malformed_email_is_a_400(self) -> None:
        response = self.delete(self.url("not-an-email"))
        self.assertEqual(response.status_code, 400)
        self.assertIn("not-an-email", response.json()["email"][0])

    def test_an_access_key_cannot_add_or_remove(self) -> None:
        _key, raw = api_key("uploader", "access")
        response = self.client.post(
            self.url(),
            json.dumps({"emails": ["x@y.example"]}),
            content_type="application/json",
            **key_header(raw),
        )
        self.assertEqual(response.status_code, 403)
        response = self.client.delete(
            self.url("jane@university.example"), **key_header(raw)
        )
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.emails(), ["jane@university.example"])
