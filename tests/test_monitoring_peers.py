"""Monitoring with real processes: Celery workers and beat on the local Redis
(or the embedded default without a broker), Orthanc behind the generated nginx
configuration, gunicorn answering the health endpoint, alert emails written
to files by the processes that send them.

Each run uses its own Redis database index and queue name, its own database,
and kills every process group it started."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from bench import stub
from integrations.connectivity import proxyconfig
from integrations.models import DicomWebServer, Institution
from tests import peers, served

pytestmark = pytest.mark.peers

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = 13  # monitoring's tests; the benchmark uses 14
INTERVAL_MINUTES = "0.05"  # 3 s
ROOT = served.ROOT


def require_redis() -> None:
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")


@contextmanager
def group(args: list[str], env: dict[str, str], log: Path) -> Iterator[Any]:
    """A process in a session of its own; the whole group is killed after."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left behind


@contextmanager
def celery(env: dict[str, str], tmp: Path, *, beat: bool) -> Iterator[None]:
    """One worker (prefork, 1 process) and, with ``beat``, the scheduler."""
    require_redis()
    base = [sys.executable, "-m", "celery", "-A", "pacsbin_integrations"]
    worker = [
        *base,
        *["worker", "--pool", "prefork", "--concurrency", "1"],
        *["-Q", env["MONITOR_QUEUE"], "-n", f"{env['MONITOR_QUEUE']}@%h"],
        *["--without-gossip", "--without-mingle", "--without-heartbeat"],
        *["-l", "WARNING"],
    ]
    scheduler = [*base, "beat", "-s", str(tmp / "beat-schedule"), "-l", "WARNING"]
    try:
        with group(worker, env, tmp / "worker.log"):
            if not beat:
                yield
                return
            with group(scheduler, env, tmp / "beat.log"):
                yield
    finally:
        import redis

        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
        for key in client.scan_iter(f"*{env['MONITOR_QUEUE']}*"):
            client.delete(key)


def monitoring_env(db_env: dict[str, str], tmp: Path, broker: bool) -> dict[str, str]:
    extra = {
        "CONNECTIVITY_ALLOW_PRIVATE": "1",
        "UPLOADER_ORIGINS": "https://pacsbin.com",
        "MONITOR_INTERVAL_MINUTES": INTERVAL_MINUTES,
        "MONITOR_TICK_SECONDS": "0.5",
        "MONITOR_FAILING_AFTER": "2",
        "MONITOR_ALERT_EMAILS": "oncall@registry.example",
        "MONITOR_QUEUE": f"monitor-test-{secrets.token_hex(4)}",
        "MONITOR_CHECK_THREADS": "4",
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "DJANGO_EMAIL_FILE_PATH": str(tmp / "mail"),
        "REGISTRY_PUBLIC_ORIGIN": "https://registry.example.org",
    }
    env = served.base_env(**db_env, **extra)
    env.pop("CELERY_BROKER_URL", None)
    if broker:
        env["CELERY_BROKER_URL"] = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    return env


def subjects(mail: Path) -> list[str]:
    """Every alert sent so far, oldest first (one file per connection)."""
    if not mail.exists():
        return []
    found = []
    for path in sorted(mail.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        found += re.findall(r"^Subject: (.*)$", path.read_text(), re.MULTILINE)
    return found


class Nginx:
    """The generated configuration on one fixed port, stopped and restarted."""

    def __init__(self, tmp: Path, site: str) -> None:
        peers.require(peers.NGINX)
        self.port = peers.free_port()
        self.prefix = tmp / "nginx"
        for sub in ("logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        cert, key = peers.self_signed_certificate(tmp)
        main = peers.nginx_main(self.prefix, site, self.port, cert, key, tls=False)
        (self.prefix / "nginx.conf").write_text(main)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            peers.NGINX,
            "-p",
            str(self.prefix),
            "-c",
            str(self.prefix / "nginx.conf"),
        ]
        log = self.prefix / "logs" / "stdout.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*args, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
            )
        peers.wait_for(f"{self.url}/", self.process, log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def health(site: served.Served) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{site.url}/api/v1/servers/{site.server_id}/health", headers=site.headers
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        import json

        return json.loads(answer.read())


def wait_for_state(site: served.Served, state: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        now = health(site)
        if now["state"] == state:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"still {now} after {seconds} s, not {state}")
        time.sleep(0.3)


@pytest.mark.parametrize("engine", ["celery", "embedded"])
def test_a_stopped_proxy_fails_with_one_alert_then_recovers_with_one(
    engine: str, orthanc: peers.Orthanc, tmp_path: Path, settings: Any
) -> None:
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = ""
    archive = DicomWebServer(
        institution=Institution(name="University Hospital"),
        name="PACS",
        qido_url=orthanc.dicomweb,
        wado_url=orthanc.dicomweb,
    )
    proxy = Nginx(tmp_path, proxyconfig.render(archive, "nginx"))
    proxy.start()
    mail = tmp_path / "mail"
    try:
        with served.served(
            tmp_path, f"monitor_{engine}", postgres_url=served.suite_postgres_url()
        ) as site:
            env = monitoring_env(site.database, tmp_path, broker=engine == "celery")
            url = f"{proxy.url}/dicom-web"
            served.manage(
                env,
                "shell",
                "-c",
                "from integrations.models import DicomWebServer; "
                f"DicomWebServer.objects.filter(pk={site.server_id})"
                f".update(qido_url='{url}', wado_url='{url}')",
            )
            if engine == "celery":
                running = celery(env, tmp_path, beat=True)
            else:
                running = group(
                    [sys.executable, "manage.py", "monitor"],
                    env,
                    tmp_path / "monitor.log",
                )
            with running:
                ok = wait_for_state(site, "ok", 60)
                assert ok["outcome"] == "ok" and ok["last_ok_at"]
                # The ok check learnt what Orthanc does, through nginx.
                assert ok["capabilities"]["no_match"] in ("204", "200_empty")
                assert subjects(mail) == []

                proxy.stop()
                stopped = time.monotonic()
                failing = wait_for_state(site, "failing", 30)
                # Within two intervals (3 s each), with room for a busy machine.
                assert time.monotonic() - stopped < 2 * 3 + 4
                assert failing["outcome"] == "unreachable"
                time.sleep(7)  # two more intervals: no repeat
                assert subjects(mail) == [
                    "[Pacsbin Integrations] FAILING: PACS (University Hospital)"
                ]
                assert health(site)["state"] == "failing"

                proxy.start()
                wait_for_state(site, "ok", 30)
                time.sleep(4)
                assert subjects(mail) == [
                    "[Pacsbin Integrations] FAILING: PACS (University Hospital)",
                    "[Pacsbin Integrations] RECOVERED: PACS (University Hospital)",
                ]
            body = "".join(p.read_text() for p in mail.iterdir())
            assert (
                "Server page: https://registry.example.org/admin/integrations/"
                f"dicomwebserver/{site.server_id}/change/" in body
            )
    finally:
        proxy.stop()


SEED = """
from integrations.models import DicomWebServer, Institution
institution = Institution.objects.create(name="Bench Hospital")
DicomWebServer.objects.bulk_create(
    DicomWebServer(
        institution=institution, name=f"Archive {n}", status="active",
        qido_url=f"{BASE}/archive/{n}/dicom-web",
        wado_url=f"{BASE}/archive/{n}/dicom-web",
    )
    for n in range(COUNT)
)
"""


def count_checks(db_env: dict[str, str]) -> dict[int, int]:
    sql = (
        "SELECT server_id, COUNT(*) FROM integrations_connectivitycheck "
        "GROUP BY server_id"
    )
    if "SQLITE_PATH" in db_env:
        with sqlite3.connect(db_env["SQLITE_PATH"]) as connection:
            return dict(connection.execute(sql).fetchall())
    import psycopg

    with psycopg.connect(db_env["DATABASE_URL"]) as connection:
        return dict(connection.execute(sql).fetchall())


@pytest.mark.parametrize("engine", ["embedded", "celery"])
def test_two_rounds_at_once_check_each_due_server_once(
    engine: str, tmp_path: Path
) -> None:
    archives = stub.serve(peers.free_port())
    base = f"http://127.0.0.1:{archives.server_address[1]}"
    count = 200
    try:
        with served.database(
            tmp_path, f"monitor_race_{engine}", served.suite_postgres_url()
        ) as db_env:
            env = monitoring_env(db_env, tmp_path, broker=engine == "celery")
            env["MONITOR_BATCH_SIZE"] = "10"
            served.manage(env, "migrate", "--no-input")
            seed = SEED.replace("BASE", repr(base)).replace("COUNT", str(count))
            served.manage(env, "shell", "-c", seed)
            running = celery(env, tmp_path, beat=False) if engine == "celery" else None
            with running or _nothing():
                rounds = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "manage.py",
                            "monitor",
                            "--once",
                            "--wait",
                            "120",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        start_new_session=True,
                    )
                    for _ in range(2)
                ]
                outputs = [r.communicate(timeout=180) for r in rounds]
            assert [r.returncode for r in rounds] == [0, 0], outputs
            checked = [
                int(re.search(r"Checked (\d+) of", out).group(1))  # type: ignore[union-attr]
                for out, _ in outputs
            ]
            assert sum(checked) == count, outputs
            per_server = count_checks(db_env)
            assert len(per_server) == count
            assert set(per_server.values()) == {1}
    finally:
        archives.shutdown()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.django_db
def test_an_https_archive_has_its_certificate_expiry_recorded_and_alerted(
    orthanc: peers.Orthanc,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the generated nginx with TLS (a certificate valid for one day,
    trusted for this test): the check records its notAfter, says it expires
    soon, and monitoring alerts once at the 7-day stage."""
    from datetime import timedelta

    from django.core import mail
    from django.utils import timezone

    from integrations.connectivity import client
    from integrations.models import ServerHealth
    from integrations.monitoring import rounds
    from tests.factories import make_institution, make_server

    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    # The alert's links need an origin (required with debug off).
    settings.REGISTRY_PUBLIC_ORIGIN = "https://pacsbin.com"
    settings.CONNECTIVITY_ALLOW_PRIVATE = True
    settings.MONITOR_ALERT_EMAILS = ["oncall@registry.example"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    archive = make_server(make_institution(), "TLS PACS", qido_url=orthanc.dicomweb)
    config = proxyconfig.render(archive, "nginx")
    with peers.nginx(tmp_path, config, tls=True) as proxy:
        cert, _ = peers.self_signed_certificate(tmp_path)
        monkeypatch.setattr(client, "CA_CERTS", str(cert))
        url = proxy.replace("127.0.0.1", "localhost") + "/dicom-web"
        DicomWebServer.objects.filter(pk=archive.pk).update(qido_url=url, wado_url=url)
        settings.CONNECTIVITY_ALLOW_PRIVATE = True
        for _ in range(2):
            claimed = rounds.dispatch(send=rounds.check_batch)
            assert claimed == [archive.pk]
            ServerHealth.objects.update(next_check_at=None)
    health = ServerHealth.objects.get(pk=archive.pk)
    assert health.state == "ok", health.outcome
    assert health.tls_expires_at is not None
    left = health.tls_expires_at - timezone.now()
    assert timedelta(hours=23) < left <= timedelta(days=1, minutes=1)
    assert health.tls_alert_stage == 7
    check = archive.connectivity_checks.first()
    assert check is not None
    assert "tls_expires_soon" in [f["code"] for f in check.findings]
    assert [m.subject for m in mail.outbox] == [
        "[Pacsbin Integrations] TLS certificate expires in 0 day(s): "
        "TLS PACS (University Hospital)"
    ]
