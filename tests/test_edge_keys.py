"""POST /api/v1/servers/{id}/edge-key: a new key for the archive's edge."""

from __future__ import annotations

from django.test import TestCase, override_settings

from integrations.edge import edgekeys
from integrations.models import DicomWebServer, Institution
from tests.api_helpers import key_header
from tests.factories import api_key, server
from tests.test_permissions import staffer

JANE = "jane.doe@university.example"


@override_settings(REGISTRY_PUBLIC_ORIGIN="https://registry.example")
class EdgeKeyTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.manage_key, cls.manage = api_key("manager", "manage")
        cls.access_key, cls.access = api_key("uploader", "access")
        institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(institution, "Gated PACS", emails=[JANE])
        cls.pacs.edge_enforced = True
        cls.pacs.save()

    def url(self, server_id: object = None) -> str:
        chosen = self.pacs.pk if server_id is None else server_id
        return f"/api/v1/servers/{chosen}/edge-key"

    def post(self, url: str | None = None, **headers: str):
        return self.client.post(url or self.url(), **headers)

    def test_a_manage_key_gets_a_key_and_the_ready_configurations(self) -> None:
        response = self.post(**key_header(self.manage))
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual(set(body), {"edge_key", "configs"})
        self.assertEqual(set(body["configs"]), {"nginx", "caddy"})
        self.assertTrue(all(isinstance(v, str) and v for v in body["configs"].values()))
        self.assertEqual(edgekeys.server_id_of(body["edge_key"]), self.pacs.pk)
        self.assertEqual(response["Cache-Control"], "no-store")
        self.pacs.refresh_from_db()
        # Only the hash is kept.
        self.assertEqual(self.pacs.edge_key_hash, edgekeys.hashed(body["edge_key"]))
        self.assertNotIn(body["edge_key"], self.pacs.edge_key_hash)

    def test_a_new_key_replaces_the_old_one(self) -> None:
        first = self.post(**key_header(self.manage)).json()["edge_key"]
        second = self.post(**key_header(self.manage)).json()["edge_key"]
        self.assertNotEqual(first, second)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, edgekeys.hashed(second))

    def test_the_proxy_config_never_shows_the_key(self) -> None:
        key = self.post(**key_header(self.manage)).json()["edge_key"]
        for kind in ("nginx", "caddy", "apache"):
            text = self.client.get(
                f"/api/v1/servers/{self.pacs.pk}/proxy-config/{kind}",
                **key_header(self.manage),
            ).content.decode()
            self.assertNotIn(key, text)
            self.assertNotIn(key.partition(".")[2], text)

    def test_every_rotation_is_in_the_history_without_the_hash(self) -> None:
        before = self.pacs.history.count()
        self.post(**key_header(self.manage))
        self.post(**key_header(self.manage))
        rows = list(self.pacs.history.order_by("history_date", "history_id"))
        self.assertEqual(len(rows), before + 2)
        self.assertEqual(rows[-1].history_actor, "api-key:manager")
        self.assertIsNotNone(rows[-1].edge_key_created_at)
        self.assertNotEqual(rows[-1].edge_key_created_at, rows[-2].edge_key_created_at)
        self.assertFalse(hasattr(rows[-1], "edge_key_hash"))

    def test_enabling_and_disabling_enforcement_is_audited(self) -> None:
        for value in (False, True):
            response = self.client.patch(
                f"/api/v1/servers/{self.pacs.pk}/",
                {"edge_enforced": value},
                content_type="application/json",
                **key_header(self.manage),
            )
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.json()["edge_enforced"], value)
        flags = [
            row.edge_enforced for row in self.pacs.history.order_by("history_date")
        ]
        self.assertEqual(flags[-3:], [True, False, True])

    def test_edge_enforced_takes_only_a_boolean(self) -> None:
        for value in ("yes", 1, None, "true", [True]):
            with self.subTest(value=value):
                response = self.client.patch(
                    f"/api/v1/servers/{self.pacs.pk}/",
                    {"edge_enforced": value},
                    content_type="application/json",
                    **key_header(self.manage),
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn("edge_enforced", response.json())

    def test_a_server_is_created_not_enforced_by_default(self) -> None:
        response = self.client.post(
            "/api/v1/servers/",
            {
                "institution": self.pacs.institution_id,
                "name": "New",
                "qido_url": "https://new.example/dicomweb",
                "wado_url": "https://new.example/dicomweb",
            },
            content_type="application/json",
            **key_header(self.manage),
        )
        self.assertEqual(response.status_code, 201)
        self.assertIs(response.json()["edge_enforced"], False)

    def test_no_credentials_is_a_401(self) -> None:
        self.assertEqual(self.post().status_code, 401)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")

    def test_an_access_key_is_a_403(self) -> None:
        self.assertEqual(self.post(**key_header(self.access)).status_code, 403)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")

    def test_a_staffer_needs_the_change_permission_on_servers(self) -> None:
        for codenames in (
            ("view_dicomwebserver",),
            ("add_dicomwebserver", "view_dicomwebserver"),
        ):
            with self.subTest(codenames=codenames):
                self.client.force_login(staffer("-".join(codenames), *codenames))
                self.assertEqual(self.post().status_code, 403)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")
        self.client.force_login(staffer("changer", "change_dicomwebserver"))
        # A session needs CSRF like any other API write (enforced by DRF).
        self.assertEqual(self.post().status_code, 201)

    def test_odd_ids_are_404s_never_500s(self) -> None:
        auth = key_header(self.manage)
        for server_id in ("999999", "0", "abc", "1.5", "١", "9" * 19, "9" * 40, "-1"):
            with self.subTest(server_id=server_id):
                response = self.post(self.url(server_id), **auth)
                self.assertEqual(response.status_code, 404)

    def test_other_methods_are_405(self) -> None:
        auth = key_header(self.manage)
        for method in ("get", "put", "patch", "delete"):
            with self.subTest(method=method):
                response = getattr(self.client, method)(self.url(), **auth)
                self.assertEqual(response.status_code, 405)

    def test_a_body_is_ignored(self) -> None:
        response = self.client.post(
            self.url(),
            data="{not json",
            content_type="application/json",
            **key_header(self.manage),
        )
        self.assertEqual(response.status_code, 201)

    def test_a_server_with_a_url_from_before_the_rule_is_a_409(self) -> None:
        DicomWebServer.objects.filter(pk=self.pacs.pk).update(
            qido_url="http://pacs/dicom;web"
        )
        response = self.post(**key_header(self.manage))
        self.assertEqual(response.status_code, 409)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")  # nothing written
