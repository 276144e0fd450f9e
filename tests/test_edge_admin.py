"""The gate in the admin and on the public form: the switch, "Create edge
key" (shown once, with the configurations and Copy buttons), "last used" per
approved user, the usage page; the form's offer, carried by approval."""

from __future__ import annotations

import time
from unittest import mock

from django.contrib.auth import get_user_model
from django.test import Client, TestCase, override_settings

from integrations import registry
from integrations.edge import edgekeys, tokens, usage
from integrations.models import DicomWebServer, Institution, OnboardingRequest
from integrations.onboarding import approve_request
from tests.factories import server, submitted_request
from tests.onboarding_helpers import FreshRateLimit, form_data
from tests.test_permissions import staffer

JANE = "jane.doe@university.example"


@override_settings(REGISTRY_PUBLIC_ORIGIN="https://registry.example")
class GateAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(institution, "Gated PACS", emails=[JANE])
        cls.changer = staffer(
            "changer",
            "view_dicomwebserver",
            "change_dicomwebserver",
            "view_approveduser",
        )
        cls.viewer = staffer("viewer", "view_dicomwebserver", "view_approveduser")

    def key_url(self, server_id: object = None) -> str:
        chosen = server_id or self.pacs.pk
        return f"/admin/integrations/dicomwebserver/{chosen}/edge-key/"

    def change_url(self) -> str:
        return f"/admin/integrations/dicomwebserver/{self.pacs.pk}/change/"

    def test_the_server_page_has_the_switch_and_the_button(self) -> None:
        self.client.force_login(self.changer)
        page = self.client.get(self.change_url()).content.decode()
        self.assertIn('name="edge_enforced"', page)
        self.assertIn("The gate", page)
        self.assertIn("Create edge key", page)
        self.assertIn(self.key_url(), page)

    def test_creating_a_key_shows_it_once_with_the_configurations(self) -> None:
        self.client.force_login(self.changer)
        confirm = self.client.get(self.key_url())
        self.assertEqual(confirm.status_code, 200)
        self.assertContains(confirm, "Create the edge key")
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")  # a GET changes nothing
        response = self.client.post(self.key_url())
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        key = response.context["edge_key"]
        self.assertEqual(edgekeys.server_id_of(key), self.pacs.pk)
        page = response.content.decode()
        self.assertIn(key, page)
        self.assertIn('data-copy-target="pi-gated-nginx"', page)
        self.assertIn('data-copy-target="pi-gated-caddy"', page)
        self.assertIn('data-copy-target="pi-edge-key"', page)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, edgekeys.hashed(key))
        # Never again: the server page shows when, not the key.
        again = self.client.get(self.change_url()).content.decode()
        self.assertNotIn(key, again)
        self.assertIn("Replace edge key", again)
        last = self.pacs.history.latest("history_date")
        self.assertEqual(last.history_actor, "changer")

    def test_the_button_needs_the_change_permission(self) -> None:
        self.client.force_login(self.viewer)
        self.assertEqual(self.client.get(self.key_url()).status_code, 403)
        self.assertEqual(self.client.post(self.key_url()).status_code, 403)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")
        page = self.client.get(self.change_url()).content.decode()
        self.assertNotIn('name="edge_enforced"', page)  # read-only for a viewer

    def test_the_button_needs_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.changer)
        self.assertEqual(client.post(self.key_url()).status_code, 403)
        self.pacs.refresh_from_db()
        self.assertEqual(self.pacs.edge_key_hash, "")

    def test_odd_ids_are_404s(self) -> None:
        self.client.force_login(self.changer)
        for object_id in ("999999", "abc", "١", "9" * 40, "1.5"):
            with self.subTest(object_id=object_id):
                url = self.key_url(object_id)
                self.assertEqual(self.client.get(url).status_code, 404)
                self.assertEqual(self.client.post(url).status_code, 404)
                usage_url = url.replace("edge-key", "edge-usage")
                self.assertEqual(self.client.get(usage_url).status_code, 404)

    def test_anonymous_is_sent_to_the_login(self) -> None:
        response = self.client.post(self.key_url())
        self.assertEqual(response.status_code, 302)
        self.assertIn("/admin/login/", response["Location"])

    def test_switching_enforcement_on_in_the_admin_is_audited(self) -> None:
        self.client.force_login(self.changer)
        page = self.client.get(self.change_url())
        form = page.context["adminform"].form
        data = {
            name: value
            for name, value in form.initial.items()
            if value is not None and name in form.fields
        }
        data.update(
            institution=self.pacs.institution_id,
            edge_enforced="on",
            add_emails="",
            proxy_mode="",
        )
        response = self.client.post(self.change_url(), data)
        self.assertEqual(response.status_code, 302, getattr(response, "context", {}))
        self.pacs.refresh_from_db()
        self.assertTrue(self.pacs.edge_enforced)
        last = self.pacs.history.latest("history_date")
        self.assertTrue(last.edge_enforced)
        self.assertEqual(last.history_actor, "changer")

    def test_last_used_per_approved_user_and_the_usage_page(self) -> None:
        edge_key = registry.replace_edge_key(self.pacs)
        token = tokens.token_for(JANE, self.pacs.pk).value
        with mock.patch.object(usage, "FLUSH_SECONDS", 3600.0):
            usage._last_flush = time.monotonic()
            for authorization in (f"Bearer {token}", f"Bearer {token}", "Bearer x"):
                self.client.get(
                    "/api/v1/edge/verify",
                    HTTP_X_EDGE_KEY=edge_key,
                    HTTP_AUTHORIZATION=authorization,
                )
        usage.flush()
        self.client.force_login(self.changer)
        listing = self.client.get(
            f"/admin/integrations/approveduser/?server__id__exact={self.pacs.pk}"
        ).content.decode()
        self.assertIn("Last used through the edge", listing)
        self.assertNotIn('<td class="field-last_used">-</td>', listing)
        page = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.pacs.pk}/edge-usage/"
        )
        self.assertEqual(page.status_code, 200)
        days = page.context["days"]
        self.assertEqual(len(days), 1)
        self.assertEqual((days[0]["granted"], days[0]["refused"]), (2, 1))
        self.assertContains(page, 'id="pi-edge-usage"')

    def test_the_usage_page_needs_the_view_permission(self) -> None:
        nobody = get_user_model().objects.create_user(
            "nobody", "n@pacsbin.example", is_staff=True
        )
        self.client.force_login(nobody)
        response = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.pacs.pk}/edge-usage/"
        )
        self.assertEqual(response.status_code, 403)


class PublicFormTests(FreshRateLimit, TestCase):
    def test_the_form_offers_the_gate_in_plain_words(self) -> None:
        page = self.client.get("/onboarding/").content.decode()
        self.assertIn('name="edge_enforced"', page)
        self.assertIn("Only let approved users read the archive", page)
        self.assertIn("anyone who can reach your proxy still gets images", page)

    def test_a_submission_carries_it_and_approval_sets_it(self) -> None:
        response = self.client.post("/onboarding/", form_data(edge_enforced="on"))
        self.assertEqual(response.status_code, 302)
        r = OnboardingRequest.objects.get()
        self.assertTrue(r.edge_enforced)
        reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)
        from tests.factories import confirm

        approve_request(confirm(r), reviewer)
        self.assertTrue(DicomWebServer.objects.get(name="Main PACS").edge_enforced)

    def test_it_is_off_unless_ticked(self) -> None:
        self.client.post("/onboarding/", form_data())
        self.assertFalse(OnboardingRequest.objects.get().edge_enforced)

    def test_approval_of_a_request_without_it_leaves_it_off(self) -> None:
        reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)
        approve_request(submitted_request(), reviewer)
        self.assertFalse(DicomWebServer.objects.get(name="Main PACS").edge_enforced)
