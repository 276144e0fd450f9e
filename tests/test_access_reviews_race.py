"""Two schedulers at once (two processes on one database of the suite's
engine, SQLite or PostgreSQL) send each due server's review once: the
server row is claimed (skip-locked on PostgreSQL) and the partial unique
constraint holds one open review per server whatever happens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import served

pytestmark = pytest.mark.load

COUNT = 60
SEED = """
from datetime import timedelta
from django.utils import timezone
from integrations import registry
from integrations.models import DicomWebServer, Institution, OnboardingRequest
old = timezone.now() - timedelta(days=400)
for n in range(COUNT):
    address = f"it{n}@hospital{n}.example"
    institution = Institution.objects.create(
        name=f"Hospital {n}", contact_email=address
    )
    OnboardingRequest.objects.create(
        institution=institution, reference=f"OB-R{n:06d}", token=f"race-{n}",
        institution_name=institution.name, contact_name="IT", contact_email=address,
        confirmation_address=address, address_confirmed_at=old, confirmed_at=old,
        server_name="PACS", qido_url="https://pacs.example/dicomweb",
        wado_url="https://pacs.example/dicomweb",
    )
    server = DicomWebServer.objects.create(
        institution=institution, name="PACS", status="active",
        qido_url="https://pacs.example/dicomweb", wado_url="https://pacs.example/dicomweb",
    )
    registry.add_approved_users(server, [f"user@hospital{n}.example"])
DicomWebServer.objects.update(created_at=old)
""".replace("COUNT", str(COUNT))
SCHEDULE = """
from integrations.accessreviews import flows
print("started", len(flows.schedule()))
"""
COUNT_REVIEWS = """
from django.db.models import Count
from integrations.models import AccessReview
per_server = AccessReview.objects.values("server").annotate(n=Count("pk"))
print("servers", per_server.count(), "most", max(r["n"] for r in per_server))
"""


def test_two_schedulers_at_once_send_each_review_once(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    with served.database(
        tmp_path, "review_race", served.suite_postgres_url()
    ) as db_env:
        env = served.base_env(
            **db_env,
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            DJANGO_EMAIL_FILE_PATH=str(mail),
            REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
        )
        served.manage(env, "migrate", "--no-input")
        served.manage(env, "shell", "-c", SEED)
        schedulers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "shell", "-c", SCHEDULE],
                cwd=served.ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [s.communicate(timeout=180) for s in schedulers]
        assert [s.returncode for s in schedulers] == [0, 0], outputs
        started = [
            int(re.search(r"started (\d+)", out).group(1))  # type: ignore[union-attr]
            for out, _ in outputs
        ]
        assert sum(started) == COUNT, outputs
        counted = served.manage(env, "shell", "-c", COUNT_REVIEWS)
        assert f"servers {COUNT} most 1" in counted, counted
    sent = [
        line
        for path in mail.iterdir()
        for line in path.read_text().splitlines()
        if line.startswith("Subject: Please review who can reach")
    ]
    assert len(sent) == COUNT
