"""Faults with real processes: an operator's Redis, PostgreSQL or Celery
worker goes away under a served registry (gunicorn, 2 workers).

- Redis stopped: every access answer is still served (throttles count per
  process), the log says so once per worker, /api/v1/health keeps 200 and
  reports the cache; Redis back, it is used again.
- Redis frozen (SIGSTOP): requests are not held up by it (short socket
  timeouts, then a circuit breaker), and all are answered.
- PostgreSQL stopped: the API answers 503 JSON with Retry-After, and 200 again
  once it is back, nothing restarted.
- A Celery worker killed mid-batch, its pool process or the whole worker: the
  batch is redone within the round, each server checked exactly once.

Redis and PostgreSQL are servers of the test's own, on their own ports,
stopped and started by the test. The Redis tests run on the suite's
database (SQLite, or PostgreSQL with DATABASE_URL); the PostgreSQL test on
both suites, with a PostgreSQL of its own.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from bench import stub
from tests import peers, served
from tests.test_monitoring_peers import count_checks, group

pytestmark = pytest.mark.peers

REDIS_SERVER = "/usr/bin/redis-server"
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
EMAIL = "jane.doe@university.edu"


# --- Servers of the test's own -------------------------------------------------


class RedisServer:
    """redis-server on a free loopback port, nothing saved to disk."""

    def __init__(self, tmp: Path) -> None:
        peers.require(REDIS_SERVER)
        self.tmp = tmp
        self.port = peers.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.tmp)]
        with (self.tmp / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl) on a free
    port; as the ``postgres`` user when the tests run as root (initdb
    refuses root)."""

    def __init__(self) -> None:
        if not POSTGRES_BIN:
            peers.require("/usr/lib/postgresql/<version>/bin/initdb")
        self.bin = Path(POSTGRES_BIN[-1])
        peers.require(str(self.bin / "initdb"), str(self.bin / "pg_ctl"))
        self.port = peers.free_port()
        # Not under pytest's tmp folder: its parents are closed to other users.
        self.root = Path(tempfile.mkdtemp(prefix="pacsbin-faults-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=50"
        )
        log = str(self.root / "postgres.log")
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        # fast: connections are cut, as when the server restarts or dies.
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data)]
            + ["-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


# --- Asking a served instance ---------------------------------------------------


def ask(site: served.Served, path: str, timeout: float = 10) -> tuple[int, Any, dict]:
    """One request on a new connection: status, JSON body, headers."""
    parts = urlsplit(site.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers=site.headers)
        response = connection.getresponse()
        raw = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw[:200].decode(errors="replace")
    return response.status, body, headers


ACCESS = f"/api/v1/access?{urlencode({'email': EMAIL})}"


def load(
    site: served.Served, seconds: float, clients: int = 4
) -> list[tuple[int, float]]:
    """``clients`` keep-alive clients asking the access question for
    ``seconds``; every (status, latency)."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        parts = urlsplit(site.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                connection.request("GET", ACCESS, headers=site.headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                status = 0
            mine.append((status, time.monotonic() - started))
        connection.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return results


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {seconds} s")
        time.sleep(0.2)


# --- Redis goes away -------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, served.Served]]:
    tmp = tmp_path_factory.mktemp("faults-redis")
    with (
        redis_server(tmp) as cache,
        served.served(
            tmp,
            "faults_redis",
            postgres_url=served.suite_postgres_url(),
            CACHE_URL=cache.url,
            CACHE_RETRY_SECONDS="1",
            ACCESS_THROTTLE_RATE="1000000/min",
        ) as site,
    ):
        yield cache, site


def log_count(site: served.Served, text: str) -> int:
    return site.log.read_text(errors="replace").count(text)


class TestRedisGoesAway:
    def test_redis_stopped_every_access_answer_is_still_served(
        self, redis_site: tuple[RedisServer, served.Served]
    ) -> None:
        cache, site = redis_site
        assert ask(site, "/api/v1/health")[:2] == (200, {"status": "ok", "cache": "ok"})
        warned = log_count(site, "is unavailable")
        cache.stop()
        try:
            answers = load(site, seconds=3)
            statuses = {status for status, _latency in answers}
            print(f"Redis stopped: {len(answers)} answers in 3 s, statuses {statuses}")
            assert statuses == {200}, site.log.read_text()[-3000:]
            assert len(answers) > 100
            status, body, _ = ask(site, "/api/v1/health")
            assert (status, body) == (200, {"status": "ok", "cache": "unavailable"})
            # Once per worker process (2), not per request.
            assert 1 <= log_count(site, "is unavailable") - warned <= 2
        finally:
            cache.start()
        wait_until(
            lambda: ask(site, "/api/v1/health")[1].get("cache") == "ok",
            10,
            "the cache back in health",
        )
        assert {status for status, _ in load(site, seconds=1)} == {200}
        assert log_count(site, "answers again") >= 1

    def test_redis_frozen_costs_no_request_more_than_a_short_timeout(
        self, redis_site: tuple[RedisServer, served.Served]
    ) -> None:
        cache, site = redis_site
        wait_until(
            lambda: ask(site, "/api/v1/health")[1].get("cache") == "ok", 10, "ok"
        )
        cache.freeze()
        try:
            answers = load(site, seconds=4)
            started = time.monotonic()
            status, body, _ = ask(site, "/api/v1/health")
            health_seconds = time.monotonic() - started
        finally:
            cache.thaw()
        statuses = {status for status, _latency in answers}
        latencies = sorted(latency for _status, latency in answers)
        print(
            f"Redis frozen: {len(answers)} answers in 4 s, "
            f"slowest {latencies[-1]:.3f} s"
        )
        assert statuses == {200}, site.log.read_text()[-3000:]
        # The client's default (no timeout) held every request ~5 s: 10
        # answers in 10 s. Now a request waits at most one short timeout.
        assert len(answers) > 200, len(answers)
        assert latencies[-1] < 1.5, latencies[-5:]
        assert (status, body) == (200, {"status": "ok", "cache": "unavailable"})
        assert health_seconds < 1.5
        wait_until(
            lambda: ask(site, "/api/v1/health")[1].get("cache") == "ok",
            10,
            "the cache back in health",
        )


# --- PostgreSQL goes away ----------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


class TestPostgresGoesAway:
    def test_the_api_answers_503_json_then_recovers_without_a_restart(
        self, postgres: PostgresServer, tmp_path: Path
    ) -> None:
        with served.served(
            tmp_path,
            "faults_pg",
            postgres_url=postgres.url,
            ACCESS_THROTTLE_RATE="1000000/min",
        ) as site:
            # Every worker thread keeps a connection (CONN_MAX_AGE): the
            # restart leaves them all dead.
            assert {status for status, _ in load(site, seconds=1, clients=8)} == {200}
            postgres.stop()
            try:
                for path in (ACCESS, "/api/v1/servers/", "/api/v1/health"):
                    status, body, headers = ask(site, path)
                    assert status == 503, (path, status, body)
                    assert headers["content-type"] == "application/json", path
                    assert headers["retry-after"] == "5", path
                    assert isinstance(body, dict), (path, body)
                    assert "Traceback" not in json.dumps(body)
                assert ask(site, "/api/v1/health")[1] == {
                    "status": "unavailable",
                    "cache": "ok",
                }
            finally:
                postgres.start()
            wait_until(lambda: ask(site, ACCESS)[0] == 200, 15, "answering again")
            assert {status for status, _ in load(site, seconds=1, clients=8)} == {200}
            assert "Traceback" not in site.log.read_text(errors="replace")


# --- A Celery worker goes away mid-batch ---------------------------------------------

SERVERS = 5
DELAY = 1.5  # seconds each archive takes to answer a preflight


class SlowArchive(stub.StubHandler):
    """The stub archive, answering each preflight (one per check) slowly, so
    a batch is still running when the test kills its worker."""

    preflights = 0

    def do_OPTIONS(self) -> None:
        SlowArchive.preflights += 1
        time.sleep(DELAY)
        super().do_OPTIONS()


SEED = """
from integrations.models import DicomWebServer, Institution
institution = Institution.objects.create(name="Slow Hospital")
for n in range({count}):
    DicomWebServer.objects.create(
        institution=institution, name=f"Archive {{n}}", status="active",
        qido_url=f"{base}/archive/{{n}}/dicom-web",
        wado_url=f"{base}/archive/{{n}}/dicom-web",
    )
"""


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a Celery worker's pool)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("lost", ["pool process", "whole worker"])
def test_a_batch_lost_with_its_worker_is_redone_once(lost: str, tmp_path: Path) -> None:
    archives = stub.StubServer(("127.0.0.1", peers.free_port()), SlowArchive)
    threading.Thread(target=archives.serve_forever, daemon=True).start()
    SlowArchive.preflights = 0
    base = f"http://127.0.0.1:{archives.server_address[1]}"
    try:
        with (
            redis_server(tmp_path) as broker,
            served.database(
                tmp_path, "faults_celery", served.suite_postgres_url()
            ) as db_env,
        ):
            queue = f"faults-{os.getpid()}"
            env = served.base_env(
                **db_env,
                CELERY_BROKER_URL=broker.url,
                CONNECTIVITY_ALLOW_PRIVATE="1",
                UPLOADER_ORIGINS="https://pacsbin.com",
                MONITOR_QUEUE=queue,
                # The next round is far away: only redelivery can redo it.
                MONITOR_INTERVAL_MINUTES="30",
                MONITOR_CHECK_THREADS="1",
                MONITOR_TASK_TIME_LIMIT="60",
                MONITOR_REDELIVER_SECONDS="3",
                DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            )
            served.manage(env, "migrate", "--no-input")
            served.manage(env, "shell", "-c", SEED.format(count=SERVERS, base=base))
            worker = [
                *[sys.executable, "-m", "celery", "-A", "pacsbin_integrations"],
                *["worker", "--pool", "prefork", "--concurrency", "1", "-Q", queue],
                *["-n", f"{queue}-%i@%h", "-l", "WARNING"],
                *["--without-gossip", "--without-mingle", "--without-heartbeat"],
            ]
            round_log = tmp_path / "round.log"
            with (
                group(worker, env, tmp_path / "worker1.log") as first,
                round_log.open("wb") as out,
            ):
                one_round = subprocess.Popen(
                    [sys.executable, "manage.py", "monitor", "--once", "--wait", "90"],
                    cwd=served.ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                wait_until(lambda: SlowArchive.preflights >= 2, 60, "mid-batch")
                if lost == "pool process":
                    for pid in children(first.pid):
                        os.kill(pid, signal.SIGKILL)
                    lost_at = time.monotonic()
                    finished = one_round.wait(timeout=120)
                else:
                    os.killpg(first.pid, signal.SIGKILL)
                    first.wait(timeout=10)
                    lost_at = time.monotonic()
                    with group(worker, env, tmp_path / "worker2.log"):
                        finished = one_round.wait(timeout=120)
                redone_in = time.monotonic() - lost_at
            report = round_log.read_text()
            assert finished == 0, report
            assert f"Checked {SERVERS} of {SERVERS}" in report
            # Redone at once or after MONITOR_REDELIVER_SECONDS (and the
            # broker's restore cycle), never the broker's hour.
            assert redone_in < 60
            checks = count_checks(db_env)
            assert sorted(checks.values()) == [1] * SERVERS, checks
    finally:
        archives.shutdown()
