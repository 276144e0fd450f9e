"""The local demo that ``make run`` serves: a healthy archive beside the failing
ones, the framed login, and the README's commands working in its checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import TestCase, override_settings

from bench import stub
from integrations.connectivity import runs
from integrations.management.commands.seed_demo import local_archive
from integrations.models import DicomWebServer
from tests.peers import free_port

ROOT = Path(__file__).resolve().parent.parent


class LocalArchiveTests(TestCase):
    def test_seed_demo_registers_the_local_archive_when_given_its_port(self) -> None:
        call_command("seed_demo", "--archive-port", "8123", stdout=StringIO())
        server = DicomWebServer.objects.get(name="Local demo archive")
        assert server.status == "active"
        assert server.qido_url == "http://127.0.0.1:8123/archive/1/dicom-web"
        server.full_clean()

    def test_without_the_port_there_is_no_local_archive(self) -> None:
        call_command("seed_demo", stdout=StringIO())
        assert not DicomWebServer.objects.filter(name="Local demo archive").exists()

    @override_settings(CONNECTIVITY_ALLOW_PRIVATE=True)
    def test_the_stub_the_demo_starts_passes_the_servers_check(self) -> None:
        port = free_port()
        running = stub.serve(port)
        try:
            spec = local_archive(port)["servers"][0]
            server = DicomWebServer(
                qido_url=spec["qido_url"], wado_url=spec["wado_url"]
            )
            result = runs.probe_server(server, "https://pacsbin.com")
        finally:
            running.shutdown()
        assert result.outcome == "ok", result.findings


@override_settings(DEBUG=True)
class DemoAdminTests(TestCase):
    def test_the_login_is_framed_and_names_the_address(self) -> None:
        port = free_port()
        running = stub.serve(port)  # anything listening will do
        out = StringIO()
        try:
            call_command(
                "demo_admin", "--wait-for", f"127.0.0.1:{port}", "--framed", stdout=out
            )
        finally:
            running.shutdown()
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("+-") and lines[-1] == lines[0]
        assert f"http://127.0.0.1:{port}/admin/" in lines[1]
        assert re.search(r"\| Admin login: admin / \S+ +\|", lines[2])
        assert {len(line) for line in lines} == {len(lines[0])}


def test_readme_commands_work_in_the_demo_checkout(tmp_path: Path) -> None:
    """An interpreter without Django runs manage.py as the README writes it:
    it re-runs itself with the checkout's .venv and takes .demo.env."""
    base_python = getattr(sys, "_base_executable", "")
    probe = subprocess.run(
        [base_python, "-c", "import django"], capture_output=True, check=False
    )
    if not base_python or probe.returncode == 0:
        pytest.skip("no interpreter without Django to run the README's command with")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ("integrations", "pacsbin_integrations", "templates", "static"):
        (checkout / entry).symlink_to(ROOT / entry)
    (checkout / "manage.py").write_text((ROOT / "manage.py").read_text())
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    (checkout / ".demo.env").write_text("# make run\nDJANGO_DEBUG=1\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "PYTHON"))
    }
    env["SQLITE_PATH"] = str(tmp_path / "demo.sqlite3")

    def manage(*args: str) -> str:
        done = subprocess.run(
            [base_python, "manage.py", *args],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--no-input")
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^python manage\.py (create_api_key .*)$", readme, re.M)
    assert command, "the README shows how to create a key"
    last = manage(*command.group(1).split("#")[0].split())
    assert re.fullmatch(r"[0-9a-f]{12}\.[\w-]{20,}", last.strip().splitlines()[-1])
