"""Approvals that end: the API's bulk add with ``days`` or ``expires_at``,
the access answer once an approval ended, and the gate's verify with a grant
cached before the end."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

from django.test import TestCase, override_settings
from django.utils import timezone

from integrations import expiry, registry
from integrations.edge import decisions, tokens, usage
from integrations.models import ApprovedUser, Institution
from tests.api_helpers import key_header
from tests.factories import api_key, server

JANE = "jane@university.example"
ACTOR = "api-key:deploy-bot"


class BulkAddWithEndTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("deploy-bot", "manage")
        cls.hospital = Institution.objects.create(name="University Hospital")
        cls.pacs = server(cls.hospital, "PACS", emails=[JANE])

    def post(self, data: object):
        return self.client.post(
            f"/api/v1/servers/{self.pacs.pk}/approved-users/",
            json.dumps(data),
            content_type="application/json",
            **key_header(self.raw),
        )

    def ends(self) -> dict[str, datetime | None]:
        return dict(self.pacs.approved_users.values_list("email", "expires_at"))

    def test_days_end_every_new_approval_that_many_days_from_now(self) -> None:
        before = timezone.now()
        response = self.post({"emails": ["a@x.example", "b@x.example"], "days": 90})
        after = timezone.now()
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["added"], ["a@x.example", "b@x.example"])
        for email in ["a@x.example", "b@x.example"]:
            end = self.ends()[email]
            assert end is not None
            self.assertTrue(
                before + timedelta(days=90) <= end <= after + timedelta(days=90)
            )

    def test_expires_at_is_taken_as_given_and_a_date_lasts_through_the_day(
        self,
    ) -> None:
        at = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
        self.post({"emails": ["a@x.example"], "expires_at": at.isoformat()})
        self.assertEqual(self.ends()["a@x.example"], at)
        day = (timezone.now() + timedelta(days=10)).date()
        self.post({"emails": ["b@x.example"], "expires_at": day.isoformat()})
        self.assertEqual(
            self.ends()["b@x.example"],
            datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
        )

    def test_an_existing_approval_gets_the_new_end_and_it_is_in_the_history(
        self,
    ) -> None:
        response = self.post({"emails": [JANE.upper(), "new@x.example"], "days": 30})
        self.assertEqual(
            response.json(),
            {"added": ["new@x.example"], "existing": ["JANE@university.example"]},
        )
        self.assertIsNotNone(self.ends()[JANE])
        change = ApprovedUser.history.filter(email=JANE, history_type="~").get()
        self.assertEqual(change.expires_at, self.ends()[JANE])
        self.assertEqual(change.history_actor, ACTOR)
        self.assertEqual(change.prev_record.expires_at, None)

    def test_null_makes_existing_approvals_endless_and_leaving_it_out_keeps_them(
        self,
    ) -> None:
        self.post({"emails": [JANE], "days": 5})
        self.post({"emails": [JANE]})
        self.assertIsNotNone(self.ends()[JANE])
        self.post({"emails": [JANE], "expires_at": None})
        self.assertIsNone(self.ends()[JANE])
        self.assertEqual(
            ApprovedUser.history.filter(email=JANE, history_type="~").count(), 2
        )

    def test_a_new_end_is_told_again_a_week_before_it(self) -> None:
        ApprovedUser.objects.filter(email=JANE).update(
            expires_at=timezone.now() + timedelta(days=3),
            expiry_notified_at=timezone.now(),
        )
        self.post({"emails": [JANE], "days": 60})
        self.assertIsNone(ApprovedUser.objects.get(email=JANE).expiry_notified_at)

    def test_bad_ends_are_400s_naming_the_value_and_nothing_is_written(self) -> None:
        past = (timezone.now() - timedelta(days=1)).isoformat()
        cases = [
            ({"expires_at": past}, "expires_at", past[:19]),
            ({"expires_at": "next tuesday"}, "expires_at", "next tuesday"),
            ({"expires_at": "2027-02-30"}, "expires_at", "2027-02-30"),
            ({"expires_at": "99999-01-01T00:00:00Z"}, "expires_at", "99999-01-01"),
            ({"expires_at": "9999-12-31T23:59:59Z"}, "expires_at", "9999-12-31"),
            ({"expires_at": 1767225600}, "expires_at", "1767225600"),
            ({"expires_at": "2027-01-01\x00"}, "expires_at", "\\u0000"),
            ({"days": 0}, "days", "0"),
            ({"days": -5}, "days", "-5"),
            ({"days": 3651}, "days", "3651"),
            ({"days": 10**30}, "days", "1000000000000000000000000000000"),
            ({"days": 1.5}, "days", "1.5"),
            ({"days": "90"}, "days", '"90"'),
            ({"days": True}, "days", "true"),
            ({"days": None}, "days", "null"),
            ({"days": 10, "expires_at": None}, "days", "not both"),
        ]
        for extra, field, named in cases:
            with self.subTest(extra=extra):
                response = self.post({"emails": [JANE, "new@x.example"], **extra})
                self.assertEqual(response.status_code, 400, response.content)
                messages = response.json()[field]
                self.assertTrue(any(named in m for m in messages), messages)
                self.assertEqual(self.ends(), {JANE: None})
        self.assertEqual(ApprovedUser.history.count(), 1)

    def test_the_schema_documents_days_and_expires_at(self) -> None:
        from django.contrib.auth.models import User

        staff = User.objects.create_superuser("s", "s@x.example", "pw-long-1-enough")
        self.client.force_login(staff)
        text = self.client.get("/api/schema/").content.decode()
        self.assertIn("expires_at", text)
        self.assertIn("Instead of expires_at", text)


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessAnswerTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        hospital = Institution.objects.create(name="University Hospital")
        cls.kept = server(hospital, "Kept PACS", emails=[JANE])
        cls.ending = server(hospital, "Ending PACS", emails=[JANE])

    def ask(self, **params: str):
        return self.client.get(
            "/api/v1/access", {"email": JANE, **params}, **key_header(self.raw)
        )

    def end(self, at: datetime) -> None:
        ApprovedUser.objects.filter(server=self.ending).update(expires_at=at)

    def test_an_ended_approval_leaves_the_answer_with_the_same_one_query(
        self,
    ) -> None:
        self.ask()  # the key is remembered: an answer is the access query alone
        self.end(timezone.now() + timedelta(minutes=5))
        with self.assertNumQueries(1):
            names = [s["name"] for s in self.ask().json()["servers"]]
        self.assertEqual(names, ["Ending PACS", "Kept PACS"])
        self.end(timezone.now() - timedelta(seconds=1))
        with self.assertNumQueries(1):
            names = [s["name"] for s in self.ask().json()["servers"]]
        self.assertEqual(names, ["Kept PACS"])

    def test_an_ended_approval_leaves_the_ohif_answer(self) -> None:
        self.ask()
        self.end(timezone.now() - timedelta(seconds=1))
        with self.assertNumQueries(1):
            sources = self.ask(format="ohif").json()["dataSources"]
        self.assertEqual(
            [s["configuration"]["friendlyName"] for s in sources],
            ["University Hospital — Kept PACS"],
        )

    def test_the_etag_changes_when_an_approval_ends(self) -> None:
        first = self.ask()["ETag"]
        self.end(timezone.now() - timedelta(seconds=1))
        response = self.client.get(
            "/api/v1/access",
            {"email": JANE},
            HTTP_IF_NONE_MATCH=first,
            **key_header(self.raw),
        )
        self.assertEqual(response.status_code, 200)
        self.assertNotEqual(response["ETag"], first)


class GateTests(TestCase):
    """The registry's own decision cache never keeps a grant past the end."""

    @classmethod
    def setUpTestData(cls) -> None:
        hospital = Institution.objects.create(name="University Hospital")
        cls.pacs = server(hospital, "Gated PACS", emails=[JANE])
        cls.pacs.edge_enforced = True
        cls.pacs.save()

    def setUp(self) -> None:
        decisions.forget(fresh_cache=True)
        self.edge_key = registry.replace_edge_key(self.pacs)
        self.token = tokens.token_for(JANE, self.pacs.pk).value
        patcher = mock.patch.object(usage, "FLUSH_SECONDS", 3600.0)
        patcher.start()
        self.addCleanup(patcher.stop)

    def verify(self):
        return self.client.get(
            "/api/v1/edge/verify",
            HTTP_X_EDGE_KEY=self.edge_key,
            HTTP_AUTHORIZATION=f"Bearer {self.token}",
        )

    def test_a_grant_cached_before_the_end_is_refused_after_it(self) -> None:
        # The cached approval carries its end: no write, no new generation.
        with self.captureOnCommitCallbacks(execute=True):
            registry.add_approved_users(
                self.pacs, [JANE], expiry.Expiry(timezone.now() + timedelta(minutes=2))
            )
        self.assertEqual(self.verify().status_code, 204)
        self.assertEqual(self.verify().status_code, 204)
        later = time.time() + 121  # the token itself lasts 600 s
        with mock.patch("integrations.edge.decisions.time.time", return_value=later):
            self.assertEqual(self.verify().status_code, 403)

    def test_renewing_the_approval_grants_again_at_once(self) -> None:
        ApprovedUser.objects.filter(server=self.pacs).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        self.assertEqual(self.verify().status_code, 403)
        with self.captureOnCommitCallbacks(execute=True):
            registry.add_approved_users(
                self.pacs, [JANE], expiry.Expiry(timezone.now() + timedelta(days=1))
            )
        self.assertEqual(self.verify().status_code, 204)


class PermissionTests(TestCase):
    """Giving an end renews approvals already there: it needs the change
    permission on approved users, in the API and on the server page alike."""

    @classmethod
    def setUpTestData(cls) -> None:
        from django.contrib.auth.models import Permission, User

        hospital = Institution.objects.create(name="University Hospital")
        cls.pacs = server(hospital, "PACS", emails=[JANE])
        cls.clerk = User.objects.create_user(
            "clerk", "clerk@x.example", "pw-long-enough-1", is_staff=True
        )
        cls.clerk.user_permissions.add(
            *Permission.objects.filter(
                codename__in=[
                    "view_approveduser",
                    "add_approveduser",
                    "view_dicomwebserver",
                    "change_dicomwebserver",
                ]
            )
        )

    def setUp(self) -> None:
        self.client.force_login(self.clerk)

    def test_the_api_refuses_an_end_without_change_and_writes_nothing(self) -> None:
        url = f"/api/v1/servers/{self.pacs.pk}/approved-users/"
        response = self.client.post(
            url,
            json.dumps({"emails": [JANE, "new@x.example"], "days": 5}),
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 403, response.content)
        self.assertIn("change approved users", response.json()["detail"])
        self.assertEqual(self.pacs.approved_users.count(), 1)
        response = self.client.post(
            url,
            json.dumps({"emails": ["new@x.example"]}),
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 200)

    def test_the_server_page_hides_access_lasts_and_ignores_a_forged_one(
        self,
    ) -> None:
        page = f"/admin/integrations/dicomwebserver/{self.pacs.pk}/change/"
        self.assertNotContains(self.client.get(page), "Access lasts")
        ApprovedUser.objects.filter(email=JANE).update(
            expires_at=timezone.now() + timedelta(days=3)
        )
        response = self.client.post(
            page,
            {
                "institution": self.pacs.institution_id,
                "name": self.pacs.name,
                "qido_url": self.pacs.qido_url,
                "wado_url": self.pacs.wado_url,
                "status": self.pacs.status,
                "cors_mode": self.pacs.cors_mode,
                "add_emails": f"{JANE}\nnew@x.example",
                "access_lasts": "365",
            },
        )
        self.assertEqual(response.status_code, 302)
        ends = dict(self.pacs.approved_users.values_list("email", "expires_at"))
        self.assertIsNone(ends["new@x.example"])
        end = ends[JANE]
        assert end is not None
        self.assertLess(end, timezone.now() + timedelta(days=4))
