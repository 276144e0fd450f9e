"""The benchmark's own parts: the seed and the load generator (not timed)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import SimpleTestCase, TestCase

from bench import gate, outside
from bench.env import ACCESS_PATH, BARE_PATH, FLOOR_PATH, ROOT, base_env
from bench.load import percentile, run_load, schedule
from bench.measure import summarise
from bench.seed import Sizes, seed, user_email
from integrations.models import ApprovedUser, DicomWebServer, Institution
from integrations.validators import email_key, normalize_email
from tests.peers import require


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

    def do_GET(self) -> None:
        status = 200 if self.headers["Authorization"] == "Api-Key k" else 401
        body = b'{"servers": []}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def phase(path: str, rps: float, p50: float) -> dict[str, object]:
    return {
        "path": path,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p50 * 3,
        "mean_bytes": 10,
        "connections": 4,
    }


class SummaryTests(SimpleTestCase):
    def test_ratios_and_gaps_are_medians_of_each_rounds_own(self) -> None:
        # Round 2 ran on a busy machine: every path slower, the ratios the same.
        phases = [
            *[phase(ACCESS_PATH, 800, 4.0), phase(BARE_PATH, 1000, 3.0)],
            phase(FLOOR_PATH, 900, 3.5),
            *[phase(BARE_PATH, 500, 6.0), phase(ACCESS_PATH, 400, 8.0)],
            phase(FLOOR_PATH, 450, 7.0),
            *[phase(FLOOR_PATH, 900, 3.5), phase(ACCESS_PATH, 810, 4.0)],
            phase(BARE_PATH, 1000, 3.0),
        ]
        result = summarise(phases)
        self.assertEqual(result["access_rps"], 800)
        self.assertEqual(result["floor_rps"], 900)
        self.assertEqual(result["bare_rps"], 1000)
        self.assertAlmostEqual(result["ratio"], 800 / 900)
        self.assertAlmostEqual(result["ratio_bare"], 0.8)
        self.assertAlmostEqual(result["p50_over_floor_ms"], 0.5)
        self.assertAlmostEqual(result["p50_over_bare_ms"], 1.0)
        self.assertEqual(result["bare_p50_ms"], 3.0)
        self.assertEqual(len(result["rounds"]), 3)
        self.assertEqual(result["rounds"][1]["access"]["rps"], 400)


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

    def test_it_loads_three_paths_in_rounds(self) -> None:
        port = self.serve()
        phases = run_load(port, ["/a", "/b", "/c"], "k", ["q=1"], 0.1, 2, 1, 1)
        paths = [phase["path"] for phase in phases]
        self.assertEqual(paths, ["/a", "/b", "/c", "/a", "/c", "/b"])
        self.assertTrue(all(phase["requests"] > 0 for phase in phases))

    def test_pairs_alternate_their_order_after_a_warm_up_pair(self) -> None:
        self.assertEqual(
            schedule(["a", "b"], 3, warmup=True),
            ["a", "b", "a", "b", "b", "a", "a", "b"],
        )

    def test_rounds_of_three_take_every_order_in_turn(self) -> None:
        phases = schedule(["a", "b", "c"], 6, warmup=True)
        self.assertEqual(phases[:3], ["a", "b", "c"])  # the warm-up round
        rounds = ["".join(phases[n : n + 3]) for n in range(3, len(phases), 3)]
        self.assertEqual(rounds, ["abc", "acb", "bac", "bca", "cab", "cba"])
        for position in range(3):
            self.assertEqual({r[position] for r in rounds}, {"a", "b", "c"})

    def test_percentiles_are_nearest_rank(self) -> None:
        values = [float(n) for n in range(1, 101)]
        self.assertEqual(percentile(values, 50), 50.0)
        self.assertEqual(percentile(values, 99), 99.0)
        self.assertEqual(percentile([], 99), 0.0)


def outside_phase(rps: float, p50: float) -> dict[str, object]:
    cpu_us = 1e6 / rps  # CPU-bound: one core's second over the answers
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p50 * 3,
        "mean_bytes": 10,
        "cpu_us": cpu_us,
    }


class OutsideSummaryTests(SimpleTestCase):
    def test_the_ratio_is_the_median_of_each_rounds_own(self) -> None:
        # Round 2 ran on a busy machine: both slower, the ratio the same.
        rounds = [
            {"access": outside_phase(900, 2.0), "health": outside_phase(1000, 1.8)},
            {"access": outside_phase(450, 4.0), "health": outside_phase(500, 3.6)},
            {"access": outside_phase(800, 2.2), "health": outside_phase(1000, 1.8)},
        ]
        result = outside.summarise(rounds)
        self.assertAlmostEqual(result["ratio"], 0.9)
        self.assertAlmostEqual(result["ratio_min"], 0.8)
        self.assertAlmostEqual(result["ratio_max"], 0.9)
        self.assertEqual(result["access_rps"], 800)
        self.assertEqual(result["health_rps"], 1000)
        self.assertEqual(result["access_p50_ms"], 2.2)
        self.assertEqual(result["health_p99_ms"], 1.8 * 3)
        self.assertAlmostEqual(result["cpu_ratio"], 0.9)
        self.assertAlmostEqual(result["access_cpu_us"], 1e6 / 800)

    def test_its_emails_are_distinct_approved_users_of_the_seed(self) -> None:
        emails = outside.approved_emails(30_000, 20_000, random.Random(1))
        self.assertEqual(len(set(emails)), 20_000)
        self.assertTrue(set(emails) <= {user_email(n) for n in range(30_000)})


class WrkHandler(BaseHTTPRequestHandler):
    """The access question's shape: an approved email and the key, else 401;
    the health check: no credentials; verify: the edge key and a Bearer."""

    seen: list[tuple[str, str | None]] = []
    edge_keys: list[str | None] = []

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        auth = self.headers["Authorization"]
        self.seen.append((self.path, auth))
        self.edge_keys.append(self.headers["X-Edge-Key"])
        ok = path == outside.HEALTH_PATH or (
            path == ACCESS_PATH and auth == "Api-Key k" and query.startswith("email=")
        )
        ok = ok or (
            path == gate.VERIFY_PATH
            and self.headers["X-Edge-Key"] == "7.ek"
            and (auth or "").startswith("Bearer ")
        )
        body = b'{"servers": []}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")  # as gunicorn's sync worker
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.peers
class WrkTests(SimpleTestCase):
    """bench/outside.py drives the real wrk with bench/wrk.lua."""

    def setUp(self) -> None:
        require(shutil.which("wrk") or "/usr/bin/wrk")
        WrkHandler.seen = []
        WrkHandler.edge_keys = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), WrkHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.port = server.server_address[1]
        self.emails = Path(self.enterContext(tempfile.TemporaryDirectory())) / "e"
        self.emails.write_text("a@x.example\nb@x.example\nc@x.example\n")

    def test_it_alternates_access_and_health_with_a_random_email_each(self) -> None:
        rounds = outside.run_rounds(
            self.port, "k", self.emails, duration=1, rounds=2, connections=2
        )
        self.assertEqual(len(rounds), 2)
        for r in rounds:
            for name in ("access", "health"):
                self.assertGreater(r[name]["requests"], 0)
                self.assertEqual(r[name]["errors"], {})
                self.assertLessEqual(r[name]["p50_ms"], r[name]["p99_ms"])
        asked = {p for p, _ in WrkHandler.seen if p.startswith(ACCESS_PATH)}
        self.assertEqual(
            asked, {f"{ACCESS_PATH}?email={e}@x.example" for e in ("a", "b", "c")}
        )
        self.assertTrue(
            all(auth == "Api-Key k" for p, auth in WrkHandler.seen if p in asked)
        )
        self.assertTrue(
            all(auth is None for p, auth in WrkHandler.seen if p not in asked)
        )

    def test_verify_sends_the_edge_key_and_a_random_token_of_the_file(
        self,
    ) -> None:
        tokens = self.emails.with_name("tokens")
        tokens.write_text("t1\nt2\nt3\n")
        args = ["verify", str(tokens), "7.ek"]
        phase = outside.phase(self.port, gate.VERIFY_PATH, args, 1, 2, 2)
        self.assertGreater(phase["requests"], 0)
        self.assertEqual(phase["errors"], {})
        self.assertEqual({p for p, _ in WrkHandler.seen}, {gate.VERIFY_PATH})
        self.assertEqual(
            {auth for _, auth in WrkHandler.seen},
            {"Bearer t1", "Bearer t2", "Bearer t3"},
        )
        self.assertEqual(set(WrkHandler.edge_keys), {"7.ek"})

    def test_a_refused_answer_stops_the_run(self) -> None:
        with self.assertRaisesRegex(SystemExit, "status_errors"):
            outside.run_rounds(self.port, "wrong", self.emails, duration=1, rounds=1)


class ServerCpuTests(SimpleTestCase):
    def test_it_counts_the_cpu_of_the_masters_children(self) -> None:
        sample = outside.server_cpu(os.getpid())
        before = sample()
        burner = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nt=time.process_time()\n"
                "while time.process_time() - t < 0.5: pass\ntime.sleep(5)",
            ]
        )
        self.addCleanup(burner.wait)
        self.addCleanup(burner.kill)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            used = outside.cpu_used(before, sample())
            if used >= 0.5:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(used, 0.5)
        self.assertLess(used, 2.0)

    def test_a_process_started_meanwhile_counts_whole(self) -> None:
        self.assertAlmostEqual(
            outside.cpu_used({1: 1.0, 2: 5.0}, {1: 1.5, 3: 0.25}), 0.75
        )


class GateSeedTests(TestCase):
    """bench/gate.py's registry: the comparisons hold only if its shape is
    what its docstring says."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.enforced, cls.edge_key, cls.gated = gate.seed(20)

    def test_every_user_has_two_servers_exactly_one_of_them_enforced(self) -> None:
        from integrations.api import access
        from tests.api_helpers import key_header

        gate.set_enforced(self.enforced, True)
        for number in (0, 1, gate.SERVERS // 2, gate.USERS - 1):
            response = self.client.get(
                ACCESS_PATH, {"email": gate.email(number)}, **key_header(self.key)
            )
            self.assertEqual(response.status_code, 200)
            servers = response.json()["servers"]
            self.assertEqual(len(servers), 2)
            self.assertEqual(sum("access_token" in s for s in servers), 1)
        gate.set_enforced(self.enforced, False)
        plain = access.answer(normalize_email(gate.email(0)))["servers"]
        self.assertEqual([s for s in plain if "access_token" in s], [])

    def test_its_edge_tokens_are_granted_with_its_edge_key(self) -> None:
        from integrations.edge import decisions

        tokens = gate.tokens_for(self.gated, 20)
        self.assertEqual(len(set(tokens)), 20)
        for token in tokens[:3]:
            decision = decisions.decide(self.edge_key, f"Bearer {token}")
            self.assertEqual(decision.status, 204, decision.reason)


class DecisionCacheOffTests(SimpleTestCase):
    def test_the_bench_can_turn_the_registrys_decision_cache_off(self) -> None:
        code = (
            "import django; django.setup();"
            "from django.conf import settings; import bench.urls;"
            "from integrations.edge import decisions;"
            "print(settings.CACHES['default']['BACKEND'], decisions.MAX_REMEMBERED)"
        )
        seen = {}
        for value in ("", "off"):
            env = {
                **base_env(),
                "DJANGO_STATIC_MANIFEST": "0",
                gate.DECISION_CACHE_OFF: value,
            }
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            self.assertEqual(done.returncode, 0, done.stderr)
            seen[value] = done.stdout.split()
        self.assertEqual(seen["off"][0], "django.core.cache.backends.dummy.DummyCache")
        self.assertEqual(seen["off"][1], "0")
        self.assertNotIn("Dummy", seen[""][0])
        self.assertNotEqual(seen[""][1], "0")


class AuditBenchTests(SimpleTestCase):
    def test_it_reads_every_seeded_row_in_each_of_its_passes(self) -> None:
        """bench/audit.py counts the export's lines: its speed and memory are
        only worth reading if every pass exported the whole seed."""
        done = subprocess.run(
            [sys.executable, "-m", "bench.audit", "--approvals", "3000"],
            cwd=ROOT,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        # A "created" record per approval, a "changed" and a day of use for
        # one in ten.
        assert result["rows_written"] == 3600
        for name in ("full", "read", "timed"):
            assert result[name]["rows"] == 3600, (name, result[name])
        assert 0 < result["floor"]["rows"] <= 3600
        assert result["full"]["python_peak_mb"] > 0
        assert result["export_over_read"] > 0
        assert "audit export as CSV (sqlite, 3,000 approvals" in done.stderr
