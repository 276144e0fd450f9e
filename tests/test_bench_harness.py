"""The benchmark's own parts: the seed and the load generator (not timed)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core import checks
from django.test import SimpleTestCase, TestCase, override_settings

from bench.load import percentile, run_load, schedule
from bench.seed import Sizes, seed, user_email
from integrations.models import ApprovedUser, DicomWebServer, Institution
from integrations.validators import email_key, normalize_email


class SeedTests(TestCase):
    def test_it_fills_the_registry_to_the_sizes_asked(self) -> None:
        users = seed(Sizes(institutions=4, servers=30, approved_users=1_000))
        self.assertEqual(Institution.objects.count(), 4)
        self.assertEqual(DicomWebServer.objects.count(), 30)
        self.assertEqual(ApprovedUser.objects.count(), 1_000)
        per_user = Counter(ApprovedUser.objects.values_list("email", flat=True))
        self.assertEqual(len(per_user), users)
        # Some users have many servers, most a few.
        self.assertGreaterEqual(per_user[user_email(0)], 20)
        self.assertLessEqual(sorted(per_user.values())[len(per_user) // 2], 6)

    def test_its_rows_are_what_the_registry_itself_would_write(self) -> None:
        seed(Sizes(institutions=2, servers=5, approved_users=50))
        for row in ApprovedUser.objects.all():
            self.assertEqual(row.email, normalize_email(row.email))
            self.assertEqual(row.email_key, email_key(row.email))
        for server in DicomWebServer.objects.all():
            server.full_clean()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's gthread worker

    def do_GET(self) -> None:  # noqa: N802
        status = 200 if self.headers["Authorization"] == "Api-Key k" else 401
        body = b'{"servers": []}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LoadGeneratorTests(SimpleTestCase):
    def serve(self) -> int:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server.server_address[1]

    def test_it_counts_answers_and_their_latencies_for_the_duration(self) -> None:
        port = self.serve()
        phases = run_load(port, ["/a", "/b"], "k", ["q=1"], 0.2, 2, 1, 2)
        self.assertEqual([phase["path"] for phase in phases], ["/a", "/b", "/b", "/a"])
        result = phases[0]
        self.assertGreater(result["requests"], 0)
        self.assertEqual(result["errors"], {})
        self.assertEqual(result["connections"], 2)
        self.assertEqual(result["mean_bytes"], 15)
        self.assertLessEqual(result["p50_ms"], result["p99_ms"])

    def test_it_reports_refusals_as_errors(self) -> None:
        port = self.serve()
        [result, _other] = run_load(port, ["/a", "/b"], "wrong", ["q=1"], 0.2, 1, 1, 1)
        self.assertEqual(result["requests"], 0)
        self.assertGreater(result["errors"]["HTTP 401"], 0)

    def test_pairs_alternate_their_order_after_a_warm_up_pair(self) -> None:
        self.assertEqual(
            schedule(["a", "b"], 3, warmup=True),
            ["a", "b", "a", "b", "b", "a", "a", "b"],
        )

    def test_percentiles_are_nearest_rank(self) -> None:
        values = [float(n) for n in range(1, 101)]
        self.assertEqual(percentile(values, 50), 50.0)
        self.assertEqual(percentile(values, 99), 99.0)
        self.assertEqual(percentile([], 99), 0.0)


class BenchFloorCheckTests(SimpleTestCase):
    def ids(self) -> list[str]:
        return [problem.id for problem in checks.run_checks()]

    def test_a_deployment_with_the_floor_on_is_warned(self) -> None:
        with override_settings(BENCH_FLOOR=True):
            self.assertIn("integrations.W090", self.ids())

    def test_a_normal_deployment_is_not(self) -> None:
        self.assertNotIn("integrations.W090", self.ids())
