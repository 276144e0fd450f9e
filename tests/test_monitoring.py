"""Monitoring in process: states, alerts, claiming, batches, pruning and the
embedded default (`manage.py monitor --once` without a broker). The probe is
replaced by answers the tests choose; tests/test_monitoring_peers.py runs the
real thing against Orthanc, nginx, Redis and Celery."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from integrations.connectivity import capabilities, probe
from integrations.models import (
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    OnboardingRequest,
    ServerHealth,
)
from integrations.monitoring import alerts, rounds, states
from tests.factories import make_institution, make_server

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def result(outcome: str = "ok", tls: datetime | None = None) -> probe.ProbeResult:
    found = probe.ProbeResult(origin="https://pacsbin.com", tls_expires_at=tls)
    if outcome == "ok":
        found.add("qido_ok", "The QIDO search answered HTTP 200.")
    else:
        found.add(
            "qido_no_allow_origin",
            "The QIDO search has no Access-Control-Allow-Origin header.\nFix it.",
            CheckOutcome(outcome),
        )
    return found


class FakeArchives:
    """probe.probe replaced: each QIDO URL answers what ``answers`` says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, probe.ProbeResult] = {}
        self.calls: list[str] = []
        self.kwargs: dict[str, dict[str, Any]] = {}
        self.learnt: list[str] = []
        monkeypatch.setattr(probe, "probe", self)
        monkeypatch.setattr(capabilities, "learn", self.learn)

    def learn(self, qido_url: str, wado_url: str, **kwargs: Any) -> dict[str, Any]:
        self.learnt.append(qido_url)
        return {"fuzzy_matching": True, "no_match": "204", "wildcard": None}

    def __call__(self, qido_url: str, *args: Any, **kwargs: Any) -> probe.ProbeResult:
        self.calls.append(qido_url)
        self.kwargs[qido_url] = kwargs
        return self.answers.get(qido_url, result("ok"))


class TestStates:
    def health(self, state: str = "ok", **fields: Any) -> ServerHealth:
        return ServerHealth(state=state, **fields)

    @override_settings(MONITOR_FAILING_AFTER=2)
    def test_ok_becomes_failing_after_two_failures_with_one_change(self) -> None:
        health = self.health("ok", since=NOW - timedelta(days=1))
        first = states.apply_check(health, result("cors_missing"), NOW, 0.1)
        assert first == [] and health.state == "ok"
        assert health.consecutive_failures == 1
        later = NOW + timedelta(minutes=15)
        second = states.apply_check(health, result("cors_missing"), later, 0.1)
        assert [c.kind for c in second] == ["failing"]
        assert health.state == "failing" and health.since == later
        assert "Access-Control-Allow-Origin" in second[0].finding
        third = states.apply_check(health, result("unreachable"), later, 0.1)
        assert third == [] and health.since == later  # no repeat while it holds

    @override_settings(MONITOR_FAILING_AFTER=2, MONITOR_INTERVAL_MINUTES=20)
    def test_a_first_failure_is_confirmed_sooner_than_an_interval(self) -> None:
        health = self.health("ok", next_check_at=NOW + timedelta(minutes=20))
        states.apply_check(health, result("cors_missing"), NOW, 0.1)
        assert health.next_check_at == NOW + timedelta(minutes=5)

    def test_failing_becomes_ok_with_a_recovery(self) -> None:
        health = self.health("failing", since=NOW - timedelta(hours=1))
        changes = states.apply_check(health, result("ok"), NOW, 0.2)
        assert [c.kind for c in changes] == ["recovered"]
        assert health.state == "ok" and health.last_ok_at == NOW
        assert health.consecutive_failures == 0
        assert states.apply_check(health, result("ok"), NOW, 0.2) == []

    def test_first_ok_of_an_unknown_server_is_not_alerted(self) -> None:
        health = self.health("unknown")
        assert states.apply_check(health, result("ok"), NOW, 0.1) == []
        assert health.state == "ok" and health.since == NOW

    def test_blocked_by_the_ssrf_guard_is_unmonitored_never_alerted(self) -> None:
        health = self.health("ok", consecutive_failures=1)
        for _ in range(3):
            assert states.apply_check(health, result("blocked"), NOW, 0.0) == []
        assert health.state == "unmonitored"

    def test_tls_warnings_at_30_14_and_7_days_each_once(self) -> None:
        health = self.health("ok")
        expires = NOW + timedelta(days=40)
        kinds = []
        for day in range(0, 40):
            now = NOW + timedelta(days=day)
            for change in states.apply_check(health, result("ok", expires), now, 0.1):
                kinds.append((day, change.kind, change.tls_days))
        assert kinds == [(11, "tls", 29), (27, "tls", 13), (34, "tls", 6)]
        assert health.tls_expires_at == expires

    @override_settings(MONITOR_TLS_WINDOW_HOURS=24)
    def test_a_renewed_certificate_counts_once_seen_for_the_window(self) -> None:
        health = self.health("ok")
        old = NOW + timedelta(days=5)
        states.apply_check(health, result("ok", old), NOW, 0.1)
        assert health.tls_alert_stage == 7
        renewed = NOW + timedelta(days=90)
        for hours in range(0, 24, 6):
            now = NOW + timedelta(hours=hours)
            assert states.apply_check(health, result("ok", renewed), now, 0.1) == []
            assert health.tls_expires_at == old and health.tls_alert_stage == 7
        later = NOW + timedelta(hours=24)
        assert states.apply_check(health, result("ok", renewed), later, 0.1) == []
        assert health.tls_expires_at == renewed and health.tls_alert_stage == 0
        assert health.tls_later_since is None

    def test_the_probe_finds_a_certificate_that_expires_soon(self) -> None:
        found = probe.ProbeResult(origin="https://pacsbin.com")
        probe.check_certificate_expiry(
            found, "https://pacs.example/dw", NOW + timedelta(days=3), NOW
        )
        assert found.findings[0].code == "tls_expires_soon"
        assert "3 day(s) left" in found.findings[0].message
        assert found.outcome == "ok"
        later = probe.ProbeResult(origin="https://pacsbin.com")
        probe.check_certificate_expiry(
            later, "https://pacs.example/dw", NOW + timedelta(days=31), NOW
        )
        assert later.findings == []


@override_settings(
    MONITOR_ALERT_EMAILS=[],
    MONITOR_FAILING_AFTER=2,
    MONITOR_INTERVAL_MINUTES=15,
    MONITOR_BATCH_SIZE=2,
    REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
    UPLOADER_ORIGINS=["https://pacsbin.com"],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class TestRounds(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.institution = make_institution(contact_email="pat@hospital.example")
        cls.servers = [
            make_server(
                cls.institution,
                f"PACS {n}",
                qido_url=f"https://pacs{n}.example/dw",
            )
            for n in range(5)
        ]
        cls.pending = make_server(
            cls.institution, "Pending", DicomWebServer.Status.PENDING
        )
        User = get_user_model()
        cls.staff = User.objects.create_user(
            "ops", "ops@registry.example", "x", is_staff=True
        )
        cls.staff.user_permissions.add(
            Permission.objects.get(codename="change_dicomwebserver")
        )
        User.objects.create_user(
            "viewer", "viewer@registry.example", "x", is_staff=True
        )
        User.objects.create_superuser("root", "root@registry.example", "x")

    @pytest.fixture(autouse=True)
    def _archives(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.archives = FakeArchives(monkeypatch)

    def round(self, now: datetime | None = None) -> list[int]:
        batches: list[list[int]] = []
        claimed = rounds.dispatch(send=batches.append, now=now)
        assert all(len(batch) <= 2 for batch in batches)
        for batch in batches:
            rounds.check_batch(batch)
        # As the next tick's dispatcher does: mail what the batches queued.
        alerts.flush()
        return claimed

    def test_a_server_behind_pacsbins_proxy_is_probed_as_one(self) -> None:
        """The proxy has no /metadata: a round probes it with its settings,
        as a check someone runs does (runs.probe_server), or every such
        server would be failing."""
        settings = {
            "mode": "dimse",
            "archive_ae_title": "PACS_SERVER",
            "archive_host": "10.1.2.3",
            "archive_port": 11112,
            "proxy_ae_title": "PACSBIN_PROXY",
            "proxy_dimse_port": 8888,
        }
        proxied = make_server(
            self.institution,
            "Behind the proxy",
            qido_url="https://proxy.hospital.example",
            cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
            pacsbin_proxy=settings,
        )
        self.round()
        assert self.archives.kwargs[proxied.qido_url]["pacsbin_proxy"] == settings
        assert self.archives.kwargs[self.servers[0].qido_url]["pacsbin_proxy"] is None

    def test_a_round_checks_every_active_server_once_and_records_in_bulk(
        self,
    ) -> None:
        claimed = self.round()
        assert sorted(claimed) == sorted(s.pk for s in self.servers)
        assert sorted(self.archives.calls) == sorted(s.qido_url for s in self.servers)
        assert ConnectivityCheck.objects.filter(outcome="ok").count() == 5
        assert not ServerHealth.objects.filter(pk=self.pending.pk).exists()
        health = ServerHealth.objects.get(pk=self.servers[0].pk)
        assert health.state == "ok" and health.last_ok_at is not None
        assert health.next_check_at > timezone.now() + timedelta(minutes=14)
        # Nothing is due until the interval has passed.
        assert self.round() == []
        later = timezone.now() + timedelta(minutes=16)
        assert len(self.round(later)) == 5

    def test_an_ok_check_learns_capabilities_at_most_every_six_hours(self) -> None:
        broken = self.servers[1]
        self.archives.answers[broken.qido_url] = result("cors_missing")
        now = timezone.now()
        self.round(now)
        assert broken.qido_url not in self.archives.learnt
        assert len(self.archives.learnt) == 4
        health = ServerHealth.objects.get(pk=self.servers[0].pk)
        assert health.capabilities == {"fuzzy_matching": True, "no_match": "204"}
        assert health.capabilities_learnt_at is not None
        self.round(now + timedelta(minutes=16))
        assert len(self.archives.learnt) == 4
        ServerHealth.objects.update(
            capabilities_learnt_at=timezone.now() - timedelta(hours=6, minutes=1)
        )
        self.round(now + timedelta(minutes=32))
        assert len(self.archives.learnt) == 8

    def test_a_claimed_server_is_not_claimed_again(self) -> None:
        now = timezone.now()
        rounds.enroll(now)
        ids = rounds.due_ids(now)
        assert len(rounds.claim(ids, now)) == 5
        assert rounds.claim(ids, now) == []
        assert rounds.due_ids(now) == []

    def test_a_failing_server_alerts_staff_once_then_recovers_once(self) -> None:
        broken = self.servers[1]
        self.archives.answers[broken.qido_url] = result("cors_missing")
        now = timezone.now()
        self.round(now)
        assert mail.outbox == []
        # The failure is confirmed sooner than a whole interval.
        self.round(now + timedelta(minutes=4))
        assert ServerHealth.objects.get(pk=broken.pk).state == "failing"
        assert len(mail.outbox) == 1
        alert = mail.outbox[0]
        assert sorted(alert.to) == ["ops@registry.example", "root@registry.example"]
        assert alert.subject == (
            "[Pacsbin Integrations] FAILING: PACS 1 (University Hospital)"
        )
        assert "unknown → failing" in alert.body or "ok → failing" in alert.body
        assert "no Access-Control-Allow-Origin header. Fix it." in alert.body
        assert (
            f"https://registry.example.org/admin/integrations/dicomwebserver/"
            f"{broken.pk}/change/" in alert.body
        )
        for minutes in (20, 40):
            self.round(now + timedelta(minutes=minutes))
        assert len(mail.outbox) == 1
        del self.archives.answers[broken.qido_url]
        self.round(now + timedelta(minutes=60))
        assert ServerHealth.objects.get(pk=broken.pk).state == "ok"
        assert [m.subject for m in mail.outbox][1] == (
            "[Pacsbin Integrations] RECOVERED: PACS 1 (University Hospital)"
        )
        assert len(mail.outbox) == 2

    def test_a_mail_server_that_is_down_never_fails_the_round(self) -> None:
        from tests.peers import free_port

        broken = self.servers[1]
        self.archives.answers[broken.qido_url] = result("cors_missing")
        now = timezone.now()
        smtp = {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": free_port(),  # nothing listens
            "EMAIL_USE_TLS": False,
            "EMAIL_TIMEOUT": 2,
        }
        with override_settings(**smtp):
            self.round(now)
            self.round(now + timedelta(minutes=5))
        health = ServerHealth.objects.get(pk=broken.pk)
        assert health.state == "failing"
        assert ConnectivityCheck.objects.filter(server=broken).count() == 2

    def test_alert_lines_hold_no_line_break_from_names(self) -> None:
        server = self.servers[2]
        DicomWebServer.objects.filter(pk=server.pk).update(name="PACS\r\nBcc: x@y")
        self.archives.answers[server.qido_url] = result("unreachable")
        now = timezone.now()
        self.round(now)
        self.round(now + timedelta(minutes=5))
        alert = mail.outbox[0]
        assert "\n" not in alert.subject and "\r" not in alert.subject
        assert "PACS Bcc: x@y" in alert.subject
        assert all(not line.startswith("Bcc") for line in alert.body.splitlines())

    @override_settings(MONITOR_ALERT_EMAILS=["oncall@registry.example"])
    def test_monitor_alert_emails_replace_the_staff(self) -> None:
        self.archives.answers[self.servers[0].qido_url] = result("not_dicomweb")
        now = timezone.now()
        self.round(now)
        self.round(now + timedelta(minutes=5))
        assert [m.to for m in mail.outbox] == [["oncall@registry.example"]]

    def test_the_contact_hears_only_when_opted_in_and_confirmed(self) -> None:
        server = self.servers[3]
        self.archives.answers[server.qido_url] = result("cors_missing")
        now = timezone.now()
        self.round(now)
        ServerHealth.objects.filter(pk=server.pk).update(alert_contact=True)
        self.round(now + timedelta(minutes=5))
        assert len(mail.outbox) == 1  # not confirmed: staff only
        OnboardingRequest.objects.create(
            institution=self.institution,
            institution_name="University Hospital",
            contact_name="Pat",
            contact_email="Pat@hospital.example",
            confirmation_address="Pat@hospital.example",
            server_name="PACS 3",
            qido_url=server.qido_url,
            wado_url=server.qido_url,
            address_confirmed_at=now,
            confirmed_at=now,
            reference="OB-TEST001",
            token="t" * 40,
        )
        del self.archives.answers[server.qido_url]
        self.round(now + timedelta(minutes=30))
        recovered = [m for m in mail.outbox if "RECOVERED" in m.subject]
        assert sorted(m.to[0] for m in recovered) == [
            "ops@registry.example",
            "pat@hospital.example",
        ]
        to_contact = next(m for m in recovered if m.to == ["pat@hospital.example"])
        assert "/admin/" not in to_contact.body

    def test_a_server_inside_a_hospital_network_is_unmonitored_not_checked(
        self,
    ) -> None:
        inside = self.servers[4]
        rounds.enroll(timezone.now())
        ServerHealth.objects.filter(pk=inside.pk).update(out_of_reach=True)
        self.round()
        assert inside.qido_url not in self.archives.calls
        assert ServerHealth.objects.get(pk=inside.pk).state == "unmonitored"
        assert not ConnectivityCheck.objects.filter(server=inside).exists()

    def test_tls_expiry_is_recorded_and_alerted_once(self) -> None:
        server = self.servers[0]
        expires = timezone.now() + timedelta(days=10)
        self.archives.answers[server.qido_url] = result("ok", expires)
        now = timezone.now()
        self.round(now)
        self.round(now + timedelta(minutes=16))
        health = ServerHealth.objects.get(pk=server.pk)
        assert health.tls_expires_at == expires and health.tls_alert_stage == 14
        assert len(mail.outbox) == 1
        assert "TLS certificate expires in 9 day(s)" in mail.outbox[0].subject

    def test_prune_keeps_the_last_days_and_checks_people_ran(self) -> None:
        self.round()
        old = timezone.now() - timedelta(days=9)
        ConnectivityCheck.objects.filter(server=self.servers[0]).update(created_at=old)
        kept = ConnectivityCheck.objects.create(
            server=self.servers[0],
            source="server",
            origin="https://pacsbin.com",
            outcome="ok",
            created_by=self.staff,
        )
        ConnectivityCheck.objects.filter(pk=kept.pk).update(created_at=old)
        with override_settings(MONITOR_KEEP_DAYS=8):
            assert rounds.prune() == 1
        assert ConnectivityCheck.objects.filter(server=self.servers[0]).count() == 1
        assert ConnectivityCheck.objects.count() == 5

    def test_on_the_soft_time_limit_the_finished_checks_are_recorded(self) -> None:
        """Celery raises SoftTimeLimitExceeded in the task's thread (from a
        signal): the checks done by then are written, the slow one is left
        for its next turn."""
        import signal
        import threading

        from celery.exceptions import SoftTimeLimitExceeded

        slow = self.servers[0]
        release = threading.Event()
        answer = self.archives.__call__

        def archives(qido_url: str, *args: Any, **kwargs: Any) -> probe.ProbeResult:
            if qido_url == slow.qido_url:
                release.wait(10)
            return answer(qido_url)

        probe.probe = archives  # type: ignore[assignment]

        def limit(signum: int, frame: Any) -> None:
            raise SoftTimeLimitExceeded()

        previous = signal.signal(signal.SIGALRM, limit)
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        try:
            rounds.enroll(timezone.now())
            ids = rounds.claim(rounds.due_ids(timezone.now()), timezone.now())
            report = rounds.check_batch(ids)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            release.set()
        assert report.checked == 4
        assert ServerHealth.objects.get(pk=slow.pk).last_checked_at is None
        assert ServerHealth.objects.filter(state="ok").count() == 4
        assert not ConnectivityCheck.objects.filter(server=slow).exists()

    def test_monitor_once_runs_a_round_in_process_without_a_broker(self) -> None:
        out = io.StringIO()
        call_command("monitor", "--once", stdout=out)
        assert "Checked 5 of 5 due server(s)" in out.getvalue()
        assert "ok 5" in out.getvalue()
        assert ServerHealth.objects.filter(state="ok").count() == 5


@pytest.mark.django_db
def test_a_private_archive_is_unmonitored_by_the_real_guard(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONNECTIVITY_ALLOW_PRIVATE = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    server = make_server(make_institution(), qido_url="http://10.1.2.3/dicom-web")
    call_command("monitor", "--once", stdout=io.StringIO())
    health = ServerHealth.objects.get(pk=server.pk)
    assert health.state == "unmonitored" and health.outcome == "blocked"
    assert mail.outbox == []


def test_the_benchmark_stub_answers_like_archives(settings) -> None:  # type: ignore[no-untyped-def]
    from bench import stub
    from tests.peers import free_port

    settings.CONNECTIVITY_ALLOW_PRIVATE = True
    archives = stub.serve(free_port())
    base = f"http://127.0.0.1:{archives.server_address[1]}"
    try:
        healthy = f"{base}/archive/7/dicom-web"
        assert probe.probe(healthy, healthy, "https://pacsbin.com").outcome == "ok"
        broken = f"{base}/broken/7/dicom-web"
        found = probe.probe(broken, broken, "https://pacsbin.com")
        assert found.outcome != "ok"
    finally:
        archives.shutdown()
