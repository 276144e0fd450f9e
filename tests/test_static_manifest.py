"""Served with debug off before `collectstatic`, every HTML page would be a
500: `check --deploy` reports it (integrations.E021) and the WSGI application
refuses to start, both naming the missing step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings

from integrations.checks import static_manifest_missing

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Loads the real settings with STATIC_ROOT moved to argv[1], then the WSGI
# application as gunicorn does.
START_WSGI = """
import sys
from pacsbin_integrations import settings
settings.STATIC_ROOT = sys.argv[1]
import pacsbin_integrations.wsgi
print("started")
"""


def folder(test: SimpleTestCase, manifest: bool = False) -> Path:
    """A fresh STATIC_ROOT, with collectstatic's manifest in it if asked."""
    made = tempfile.TemporaryDirectory()
    test.addCleanup(made.cleanup)
    root = Path(made.name)
    if manifest:
        (root / "staticfiles.json").write_text(
            json.dumps({"paths": {}, "version": "1.1", "hash": "0"})
        )
    return root


def deploy_check_ids() -> list[str]:
    return sorted(
        m.id
        for m in run_checks(include_deployment_checks=True)
        if m.id.startswith("integrations.E02")
    )


class TheDeployCheck(SimpleTestCase):
    def test_without_the_manifest_it_names_collectstatic(self) -> None:
        with self.settings(STORAGES=MANIFEST_STORAGES, STATIC_ROOT=folder(self)):
            self.assertTrue(static_manifest_missing())
            (error,) = [
                m
                for m in run_checks(include_deployment_checks=True)
                if m.id == "integrations.E021"
            ]
            self.assertIn("manage.py collectstatic", error.msg)

    def test_with_the_manifest_it_is_quiet(self) -> None:
        root = folder(self, manifest=True)
        with self.settings(STORAGES=MANIFEST_STORAGES, STATIC_ROOT=root):
            self.assertFalse(static_manifest_missing())
            self.assertEqual(deploy_check_ids(), [])

    def test_without_the_manifest_storage_there_is_nothing_to_collect(self) -> None:
        self.assertFalse(static_manifest_missing())
        self.assertEqual(deploy_check_ids(), [])

    @override_settings(STORAGES=MANIFEST_STORAGES)
    def test_the_ordinary_checks_leave_it_to_deploy(self) -> None:
        """`migrate` runs them, and comes before collectstatic."""
        with self.settings(STATIC_ROOT=folder(self)):
            self.assertNotIn("integrations.E021", [m.id for m in run_checks()])


class TheWsgiApplication(SimpleTestCase):
    def start(self, static_root: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_STATIC")}
        env.update(
            DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
            DJANGO_DEBUG="0",
            DJANGO_STATIC_MANIFEST="1",
        )
        return subprocess.run(
            [sys.executable, "-c", START_WSGI, str(static_root)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_it_refuses_to_start_before_collectstatic(self) -> None:
        result = self.start(folder(self))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImproperlyConfigured", result.stderr)
        self.assertIn("manage.py collectstatic", result.stderr)

    def test_it_starts_once_the_manifest_is_there(self) -> None:
        result = self.start(folder(self, manifest=True))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("started", result.stdout)
