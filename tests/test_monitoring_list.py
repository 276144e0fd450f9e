"""Issue 19 item 10: the monitoring list reads right. Servers by what is known
(a first failure is "confirming", never "never checked"), totals by that at
the top (each a filter), relative times with the exact one in a title,
failing first, a sparkline of the last checks drawn on the server in one
query for the page, and alert links on REGISTRY_PUBLIC_ORIGIN with its port."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.models import ConnectivityCheck, DicomWebServer, ServerHealth
from integrations.monitoring import alerts, listing
from integrations.monitoring.states import Change
from tests.factories import make_institution, make_server

LIST = "/admin/integrations/serverhealth/"
SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent


def add_checks(server: DicomWebServer, outcomes: list[str], minutes: int = 15) -> None:
    """Scheduled checks of ``server``, the last one a minute ago, one every
    ``minutes`` before it."""
    now = timezone.now()
    for index, outcome in enumerate(reversed(outcomes)):
        check = ConnectivityCheck.objects.create(
            server=server,
            source="server",
            origin="https://pacsbin.com",
            outcome=outcome,
        )
        ConnectivityCheck.objects.filter(pk=check.pk).update(
            created_at=now - timedelta(minutes=1 + index * minutes)
        )


def row_of(page: str, name: str) -> str:
    """The list row of the server named ``name``."""
    for row in re.findall(r"<tr>.*?</tr>", page, re.S):
        if f">{name}</a>" in row:
            return row
    raise AssertionError(f"no row for {name}")


class TheListReadsByWhatIsKnown(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = make_institution()
        now = timezone.now()
        cls.now = now
        cls.servers = {}
        rows = {
            "Up PACS": {"state": "ok", "since": now - timedelta(days=3)},
            "Failing PACS": {
                "state": "failing",
                "since": now - timedelta(hours=3),
                "outcome": "cors_missing",
                "consecutive_failures": 4,
                "last_checked_at": now - timedelta(minutes=3),
            },
            "Confirming PACS": {
                "state": "unknown",
                "outcome": "unreachable",
                "consecutive_failures": 1,
                "last_checked_at": now - timedelta(minutes=3),
                "next_check_at": now + timedelta(minutes=4, seconds=40),
            },
            "Wobbly PACS": {
                "state": "ok",
                "since": now - timedelta(days=1),
                "outcome": "tls_error",
                "consecutive_failures": 2,
                "last_checked_at": now - timedelta(minutes=1),
            },
            "New PACS": {"state": "unknown"},
            "Inside PACS": {"state": "unmonitored", "out_of_reach": True},
        }
        for name, fields in rows.items():
            server = make_server(institution, name)
            ServerHealth.objects.create(server=server, **fields)
            cls.servers[name] = server
        add_checks(cls.servers["Up PACS"], ["ok"] * 25)
        add_checks(cls.servers["Failing PACS"], ["ok", "ok", "cors_missing", "blocked"])
        cls.admin = get_user_model().objects.create_superuser(
            "root", "root@x.example", "pw"
        )

    def setUp(self) -> None:
        self.client.force_login(self.admin)
        self.page = self.client.get(LIST).content.decode()

    def test_a_first_failure_is_confirming_never_never_checked(self) -> None:
        row = row_of(self.page, "Confirming PACS")
        self.assertIn(">Confirming</span>", row)
        self.assertIn("Unreachable once — confirming", row)
        self.assertIn("next check <time", row)
        self.assertNotIn("never checked", row)
        self.assertNotIn("Unknown", row)
        wobbly = row_of(self.page, "Wobbly PACS")
        self.assertIn("TLS error 2 times in a row — confirming", wobbly)
        self.assertIn("never checked", row_of(self.page, "New PACS"))

    def test_failing_says_since_when_and_what(self) -> None:
        row = row_of(self.page, "Failing PACS")
        self.assertIn(">Failing</span>", row)
        self.assertRegex(row, r"since <time [^>]*>3 h 0 min ago</time> — CORS header")
        self.assertIn(">Paused</span>", row_of(self.page, "Inside PACS"))
        self.assertIn(">Up</span>", row_of(self.page, "Up PACS"))

    def test_failing_first_then_confirming_unknown_up_paused(self) -> None:
        order = [
            "Failing PACS",
            "Wobbly PACS",  # confirming, by "since": the older first, none last
            "Confirming PACS",
            "New PACS",
            "Up PACS",
            "Inside PACS",
        ]
        found = [self.page.index(f">{name}</a>") for name in order]
        self.assertEqual(found, sorted(found))

    def test_totals_by_state_at_the_top_each_a_filter(self) -> None:
        totals = self.page[: self.page.index('id="result_list"')]
        for key, count in (
            ("failing", 1),
            ("confirming", 2),
            ("unknown", 1),
            ("up", 1),
            ("paused", 1),
        ):
            link = re.search(
                rf'<a href="([^"]*)" id="total-{key}"[^>]*>\s*'
                r'<span class="pi-total-count">(\d+)</span>',
                totals,
            )
            assert link is not None, key
            self.assertEqual(int(link.group(2)), count, key)
            self.assertEqual(link.group(1), f"?shown={key}")
        page = self.client.get(LIST, {"shown": "confirming"}).content.decode()
        self.assertIn(">Confirming PACS</a>", page)
        self.assertIn(">Wobbly PACS</a>", page)
        self.assertNotIn(">Failing PACS</a>", page)
        self.assertNotIn(">Up PACS</a>", page)
        self.assertIn('aria-current="true"', page)
        # Totals count every server whatever the filter.
        self.assertIn(">6 in all", page)

    def test_times_are_relative_with_the_exact_time_in_the_title(self) -> None:
        row = row_of(self.page, "Confirming PACS")
        checked = ServerHealth.objects.get(server=self.servers["Confirming PACS"])
        assert checked.last_checked_at is not None
        exact = f"{checked.last_checked_at:%Y-%m-%d %H:%M} UTC"
        self.assertIn(f'title="{exact}">3 min ago</time>', row)
        self.assertIn(">in 4 min</time>", row)

    def test_a_sparkline_per_row_of_the_last_checks(self) -> None:
        row = row_of(self.page, "Up PACS")
        svg = re.search(r"<svg .*?</svg>", row, re.S)
        assert svg is not None
        root = ElementTree.fromstring(svg.group(0))
        self.assertEqual(root.get("role"), "img")
        bars = root.findall(f"{SVG}rect")
        self.assertEqual(len(bars), listing.SPARK_CHECKS)  # 20 of 25
        self.assertTrue(all(bar.get("class") == "pi-spark-ok" for bar in bars))
        self.assertIn(
            "Last 20 check(s), oldest first: 20 ok, 0 not ok",
            root.get("aria-label", ""),
        )
        failing = row_of(self.page, "Failing PACS")
        kinds = re.findall(r'class="pi-spark-(\w+)"', failing)
        self.assertEqual(kinds, ["ok", "ok", "failed", "blocked"])  # oldest first
        self.assertIn("the newest Blocked by the SSRF guard, 1 min ago", failing)
        self.assertIn("no checks yet", row_of(self.page, "New PACS"))
        self.assertNotIn("<script", self.page[self.page.index('id="result_list"') :])


class TheListsQueriesDoNotGrowWithItsRows(TestCase):
    def fill(self, count: int) -> None:
        institution = make_institution(f"Hospital {count}")
        for number in range(count):
            server = make_server(institution, f"PACS {count}-{number}")
            ServerHealth.objects.create(
                server=server,
                state=["ok", "failing", "unknown"][number % 3],
                consecutive_failures=number % 2,
                last_checked_at=timezone.now(),
            )
            add_checks(server, ["ok", "unreachable", "ok"])

    def queries_for_list(self) -> int:
        self.client.get(LIST)  # the session's first stamp is written once
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(LIST)
        self.assertEqual(response.status_code, 200)
        return len(queries)

    def test_five_and_fifty_servers_cost_the_same_queries(self) -> None:
        admin = get_user_model().objects.create_superuser("root", "r@x.example", "pw")
        self.client.force_login(admin)
        self.fill(5)
        few = self.queries_for_list()
        self.fill(45)
        page = self.client.get(LIST).content.decode()
        self.assertEqual(page.count('class="pi-spark"'), 50)
        self.assertEqual(self.queries_for_list(), few)
        with self.assertNumQueries(few):
            self.client.get(LIST, {"shown": "up"})


class AlertLinksCarryThePort(TestCase):
    @override_settings(
        REGISTRY_PUBLIC_ORIGIN="https://registry.example:8443",
        MONITOR_ALERT_EMAILS=["staff@pacsbin.example"],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    def test_the_server_page_link_keeps_the_origins_port(self) -> None:
        server = make_server(make_institution())
        health = ServerHealth.objects.create(server=server)
        alerts.queue([Change("failing", health, "ok", "unreachable", "no answer")])
        alerts.flush()
        (message,) = mail.outbox
        self.assertIn(
            "Server page: https://registry.example:8443/admin/integrations/"
            f"dicomwebserver/{server.pk}/change/",
            message.body,
        )

    def test_the_demo_sets_the_public_origin_with_its_port(self) -> None:
        """``make run``'s monitor mails alerts with no request to take a host
        from: the demo's settings name the origin, port included."""
        dry_run = subprocess.run(
            ["make", "-n", "run", "PORT=8123"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertIn("REGISTRY_PUBLIC_ORIGIN=http://127.0.0.1:8123", dry_run)
