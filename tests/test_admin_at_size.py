from __future__ import annotations

import re
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet
from django.test import RequestFactory, TestCase
from django.test.utils import CaptureQueriesContext

from integrations import registry
from integrations.admin.registry import CappedCountPaginator
from integrations.models import ApprovedUser, DicomWebServer, Institution

CHANGELIST = "/admin/integrations/approveduser/"
# Either index on email_key serves an equality (varchar_pattern_ops does too).
EMAIL_INDEX = r"Index (Only )?Scan (on|using) approved_user_email_(like_)?idx"


def make_registry(cls: type, users_per_server: int) -> None:
    institution = Institution.objects.create(name="University Hospital")
    cls.pacs, cls.vna = (
        DicomWebServer.objects.create(
            institution=institution,
            name=name,
            qido_url=f"https://{name.lower()}.example/dicomweb",
            wado_url=f"https://{name.lower()}.example/dicomweb",
            status=DicomWebServer.Status.ACTIVE,
        )
        for name in ("PACS", "VNA")
    )
    for server in (cls.pacs, cls.vna):
        registry.add_approved_users(
            server,
            [
                f"user{i:05d}.{server.name.lower()}@example.org"
                for i in range(users_per_server)
            ]
            + ["jane.doe@university.example"],
        )
    cls.admin = get_user_model().objects.create_superuser("admin", "a@b.org", "pw")


class ApprovedUserAdminAtSizeTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        make_registry(cls, users_per_server=30)

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def listed(self, response) -> list[str]:
        return re.findall(
            r'<th class="field-email"><a [^>]*>([^<]+)</a>', response.content.decode()
        )

    def test_the_list_never_counts_a_whole_table(self) -> None:
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(CHANGELIST)
        self.assertEqual(response.status_code, 200)
        counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
        self.assertTrue(counts)
        for sql in counts:
            self.assertRegex(sql.upper(), r"LIMIT \d+", f"an uncapped count: {sql}")

    def test_past_the_cap_the_footer_says_more_than(self) -> None:
        with mock.patch.object(CappedCountPaginator, "cap", 40):
            response = self.client.get(CHANGELIST)
        self.assertContains(response, "more than 40 approved users")
        response = self.client.get(CHANGELIST)
        self.assertContains(response, "62 approved users")

    def test_a_server_filter_lists_that_servers_users_without_listing_every_server(
        self,
    ) -> None:
        response = self.client.get(CHANGELIST, {"server__id__exact": self.vna.pk})
        emails = self.listed(response)
        self.assertEqual(len(emails), 31)
        self.assertTrue(all(".vna@" in e or e.startswith("jane") for e in emails))
        self.assertContains(response, "31 approved users")
        # The sidebar names the chosen server only, not every server.
        self.assertNotContains(response, f"server__id__exact={self.pacs.pk}")

    def test_a_whole_address_is_found_ignoring_case_and_spaces(self) -> None:
        response = self.client.get(CHANGELIST, {"q": "  JANE.DOE@University.Example "})
        self.assertEqual(self.listed(response), ["jane.doe@university.example"] * 2)

    def test_the_beginning_of_an_address_finds_every_address_it_starts(self) -> None:
        response = self.client.get(CHANGELIST, {"q": "USER0001"})
        self.assertEqual(
            sorted(self.listed(response)),
            sorted(
                f"user{i:05d}.{s}@example.org"
                for i in range(10, 20)
                for s in ("pacs", "vna")
            ),
        )
        response = self.client.get(CHANGELIST, {"q": "nobody"})
        self.assertEqual(self.listed(response), [])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans")
class PostgresPlansUseTheIndexesTests(TestCase):
    """EXPLAIN, with sequential scans priced out so the plan shows whether an
    index can serve the query at all (a tiny test table would be scanned)."""

    @classmethod
    def setUpTestData(cls) -> None:
        make_registry(cls, users_per_server=200)

    def plan(self, queryset) -> str:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE integrations_approveduser")
            cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()

    def changelist_page(self, **params: str) -> QuerySet[ApprovedUser]:
        """The query the admin runs for the first page of its list."""
        request = RequestFactory().get(CHANGELIST, params)
        request.user = self.admin
        changelist = admin.site._registry[ApprovedUser].get_changelist_instance(request)
        return changelist.queryset[: changelist.list_per_page]

    def test_the_access_question_uses_the_email_index(self) -> None:
        plan = self.plan(
            DicomWebServer.objects.approved_for("jane.doe@university.example")
        )
        self.assertRegex(plan, EMAIL_INDEX)

    def test_a_servers_list_uses_the_server_and_email_index(self) -> None:
        plan = self.plan(self.changelist_page(server__id__exact=str(self.vna.pk)))
        # Either index on server_id serves the filter (which one the planner
        # picks moves with the statistics earlier tests leave); never a scan
        # of every approval.
        self.assertRegex(
            plan,
            r"Index (Only )?Scan using (approved_user_once_per_server|"
            r"integrations_approveduser_server_id_\w+) on integrations_approveduser",
        )
        self.assertNotIn("Seq Scan on integrations_approveduser", plan)

    def test_the_unfiltered_list_reads_the_email_index_in_order(self) -> None:
        self.assertIn("approved_user_email_idx", self.plan(self.changelist_page()))

    def test_the_email_searches_use_an_index(self) -> None:
        exact = self.changelist_page(q="jane.doe@university.example")
        self.assertRegex(self.plan(exact), EMAIL_INDEX)
        prefix = self.changelist_page(q="user0001")
        self.assertIn("approved_user_email_like_idx", self.plan(prefix))
