"""Monitoring's alert mail under hostile archives and storms: what an archive
sends is quoted as the archive's (cut short, escaped, after the alert's own
words); a flapping server is damped; a round's changes are one digest, mailed
once; two certificates behind one name warn once. The clock is the test's."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3
from django.core import mail
from django.test import TestCase, override_settings
from django.utils import timezone
from urllib3.exceptions import SSLError

from integrations.connectivity import capabilities, client, probe
from integrations.inputs import QUOTE_LIMIT, is_unsafe
from integrations.models import (
    DicomWebServer,
    MonitoringAlert,
    OnboardingRequest,
    ServerHealth,
)
from integrations.monitoring import alerts, rounds, states
from tests.factories import make_institution, make_server
from tests.test_monitoring import FakeArchives, result

ORIGIN = "https://pacsbin.com"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# 3,000 characters an archive chose, with what must never reach a mail raw:
# line breaks (a forged header), escape sequences, a bell, a bidi override.
HOSTILE = (
    "https://evil.example/"
    + "A" * 3000
    + "\r\nBcc: victim@example.org\x1b[31m\x07\u202eTAIL"
)
QUOTE = re.compile(r"^The archive answered: “(.*)”$")


class Clock:
    """timezone.now, as the test says (checks, claims and alert rows alike)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def answer(
    url: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    body: bytes = b"[]",
    redirects: list[str] | None = None,
) -> client.Response:
    return client.Response(
        url=url,
        status=status,
        headers=urllib3.HTTPHeaderDict(headers or {}),
        body=body,
        redirects=redirects or [],
    )


def archive_probe(
    monkeypatch: pytest.MonkeyPatch, fetch: Callable[..., client.Response]
) -> None:
    """The real probe, with the archive's answers given by ``fetch``."""
    real = probe.probe

    def probing(*args: Any, **kwargs: Any) -> probe.ProbeResult:
        return real(*args, **{**kwargs, "fetch": fetch})

    monkeypatch.setattr(probe, "probe", probing)


def good_preflight(url: str) -> client.Response:
    return answer(
        url,
        204,
        {
            "Access-Control-Allow-Origin": ORIGIN,
            "Access-Control-Allow-Headers": "Authorization, Accept",
        },
    )


def assert_quoted_safely(body: str, first: str) -> list[str]:
    """The alert's own sentence first; every line free of control characters
    and of the archive's text except inside its quotation, each at most
    QUOTE_LIMIT characters. The quotations."""
    lines = body.splitlines()
    assert lines[0].startswith(first), lines[0]
    quotes = []
    for line in lines:
        assert not any(is_unsafe(c) for c in line), line
        assert len(line) < 1000, line
        found = QUOTE.match(line)
        if found:
            quotes.append(found.group(1))
            assert len(found.group(1)) <= QUOTE_LIMIT
        else:
            assert "evil.example" not in line and "AAAAAAAAAA" not in line, line
    assert quotes, body
    assert "\r" not in body and "\x1b" not in body and "\x07" not in body
    assert "Bcc: victim" not in body
    return quotes


@override_settings(
    MONITOR_ALERT_EMAILS=["oncall@registry.example"],
    MONITOR_FAILING_AFTER=2,
    MONITOR_INTERVAL_MINUTES=15,
    REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
    UPLOADER_ORIGINS=[ORIGIN],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class TestArchiveTextInMail(TestCase):
    """Issue 17, item 2: header values, redirect targets, proxy error text
    and TLS errors reach the mail quoted as the archive's, not verbatim."""

    @pytest.fixture(autouse=True)
    def _clock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.clock = Clock(monkeypatch)
        monkeypatch.setattr(capabilities, "learn", lambda *a, **k: {})

    def fail_twice(self, server: DicomWebServer) -> MonitoringAlert:
        for _ in range(2):
            rounds.dispatch(send=rounds.check_batch)
            self.clock.advance(minutes=15)
        assert ServerHealth.objects.get(pk=server.pk).state == "failing"
        assert len(mail.outbox) == 1
        return MonitoringAlert.objects.get()

    def check_subject(self, server: DicomWebServer) -> None:
        subject = mail.outbox[0].subject
        assert subject == (
            f"[Pacsbin Integrations] FAILING: {server.name} (University Hospital)"
        )

    def test_a_hostile_allow_origin_header_is_quoted_after_the_alert(self) -> None:
        server = make_server(make_institution(), "PACS")

        def fetch(method: str, url: str, **kwargs: Any) -> client.Response:
            if method == "OPTIONS":
                return good_preflight(url)
            return answer(
                url,
                headers={
                    "Content-Type": "application/dicom+json",
                    "Access-Control-Allow-Origin": HOSTILE,
                },
            )

        archive_probe(self.monkeypatch, fetch)
        self.fail_twice(server)
        self.check_subject(server)
        body = mail.outbox[0].body
        quotes = assert_quoted_safely(body, "PACS (University Hospital) is failing")
        assert quotes[0].startswith("https://evil.example/AAAA")
        assert quotes[0].endswith("…")
        assert "allows the origin (the archive's text, quoted below), not " in body

    def test_a_hostile_redirect_target_and_content_type_are_quoted(self) -> None:
        server = make_server(make_institution(), "PACS")

        def fetch(method: str, url: str, **kwargs: Any) -> client.Response:
            if method == "OPTIONS":
                return good_preflight(url)
            return answer(
                HOSTILE,
                headers={
                    "Content-Type": "text/html\x1b]" + "B" * 3000,
                    "Access-Control-Allow-Origin": ORIGIN,
                },
                body=b"<html>",
                redirects=[HOSTILE],
            )

        archive_probe(self.monkeypatch, fetch)
        self.fail_twice(server)
        self.check_subject(server)
        quotes = assert_quoted_safely(
            mail.outbox[0].body, "PACS (University Hospital) is failing"
        )
        assert quotes[0].startswith("https://evil.example/")
        assert quotes[1].startswith("text/html\\u001b]BBBB")
        assert all(len(q) <= QUOTE_LIMIT for q in quotes)

    def test_a_hostile_tls_error_is_quoted(self) -> None:
        server = make_server(make_institution(), "PACS")

        def fetch(method: str, url: str, **kwargs: Any) -> client.Response:
            # What the client makes of the TLS library's refusal, which quotes
            # the names of the archive's certificate.
            reason = f"certificate is not valid for '{HOSTILE}'"
            raise client._transport_error(url, SSLError(reason))

        archive_probe(self.monkeypatch, fetch)
        self.fail_twice(server)
        self.check_subject(server)
        body = mail.outbox[0].body
        quotes = assert_quoted_safely(body, "PACS (University Hospital) is failing")
        assert quotes[0].startswith("certificate is not valid for 'https://evil")
        assert (
            "What the check found: The TLS handshake with "
            "https://pacs.example.edu/dicomweb/studies failed: (the archive's "
            "text, quoted below). Browsers refuse" in body
        )

    def test_a_hostile_proxy_error_is_quoted(self) -> None:
        server = make_server(
            make_institution(),
            "Proxied",
            qido_url="https://proxy.hospital.example",
            cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
            pacsbin_proxy={"mode": "dicomweb", "forward_qido_url": "https://a.b"},
        )

        def fetch(method: str, url: str, **kwargs: Any) -> client.Response:
            if method == "OPTIONS":
                return good_preflight(url)
            error = json.dumps({"error": HOSTILE}).encode()
            return answer(url, 502, {"Access-Control-Allow-Origin": ORIGIN}, body=error)

        archive_probe(self.monkeypatch, fetch)
        self.fail_twice(server)
        self.check_subject(server)
        quotes = assert_quoted_safely(
            mail.outbox[0].body, "Proxied (University Hospital) is failing"
        )
        assert quotes[0].startswith("https://evil.example/AAAA")

    def test_a_long_server_name_keeps_the_subject_short(self) -> None:
        server = make_server(make_institution(), "P" * 190)
        self.monkeypatch.setattr(probe, "probe", lambda *a, **k: result("cors_missing"))
        self.fail_twice(server)
        subject = mail.outbox[0].subject
        assert len(subject) < 120 and subject.endswith("…")
        assert "P" * 190 in mail.outbox[0].body


@override_settings(
    MONITOR_ALERT_EMAILS=["oncall@registry.example"],
    MONITOR_FAILING_AFTER=1,
    MONITOR_INTERVAL_MINUTES=15,
    MONITOR_FLAP_CHANGES=4,
    MONITOR_FLAP_WINDOW_HOURS=2,
    MONITOR_FLAP_QUIET_INTERVALS=3,
    REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
    UPLOADER_ORIGINS=[ORIGIN],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class TestFlapping(TestCase):
    """Issue 17, item 3a: about 150 emails a day per flapping server before."""

    @pytest.fixture(autouse=True)
    def _archives(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = Clock(monkeypatch)
        self.archives = FakeArchives(monkeypatch)

    def round(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)

    def subjects(self) -> list[str]:
        return [m.subject.removeprefix("[Pacsbin Integrations] ") for m in mail.outbox]

    def test_a_server_alternating_every_check_for_a_day_sends_a_few_mails(
        self,
    ) -> None:
        server = make_server(make_institution(), "PACS")
        for check in range(96):  # a day at the default interval
            if check % 2:
                self.archives.answers[server.qido_url] = result("cors_missing")
            else:
                self.archives.answers.pop(server.qido_url, None)
            self.round()
        name = "PACS (University Hospital)"
        assert self.subjects() == [
            f"FAILING: {name}",
            f"RECOVERED: {name}",
            f"FAILING: {name}",
            f"FLAPPING: {name}",
        ]
        assert "its state changed 4 times within 2 hour(s); it is ok now" in (
            mail.outbox[3].body
        )
        health = ServerHealth.objects.get(pk=server.pk)
        assert health.flapping_since is not None
        # It holds ok: after three intervals, one "settled" email, no more.
        self.archives.answers.pop(server.qido_url, None)
        for _ in range(10):
            self.round()
        assert self.subjects()[4:] == [f"SETTLED, now ok: {name}"]
        health.refresh_from_db()
        assert health.flapping_since is None and health.recent_changes == []

    def test_settling_while_failing_says_so_with_the_finding(self) -> None:
        server = make_server(make_institution(), "PACS")
        for check in range(6):
            if check % 2:
                self.archives.answers[server.qido_url] = result("cors_missing")
            else:
                self.archives.answers.pop(server.qido_url, None)
            self.round()
        assert self.subjects()[-1].startswith("FLAPPING")
        self.archives.answers[server.qido_url] = result("cors_missing")
        for _ in range(6):
            self.round()
        assert self.subjects()[-1] == "SETTLED, now failing: PACS (University Hospital)"
        assert "What the check found: The QIDO search has no" in mail.outbox[-1].body
        assert len(mail.outbox) == 5

    def test_changes_spread_wider_than_the_window_are_each_mailed(self) -> None:
        server = make_server(make_institution(), "PACS")
        for check in range(8):
            if check % 2:
                self.archives.answers[server.qido_url] = result("cors_missing")
            else:
                self.archives.answers.pop(server.qido_url, None)
            self.round()
            self.clock.advance(minutes=45)  # a change an hour
        # The first check finds it ok (unknown → ok is no change).
        assert [s.split(":")[0] for s in self.subjects()] == [
            "FAILING",
            "RECOVERED",
        ] * 3 + ["FAILING"]


@override_settings(
    MONITOR_ALERT_EMAILS=["oncall@registry.example"],
    MONITOR_FAILING_AFTER=1,
    MONITOR_INTERVAL_MINUTES=15,
    MONITOR_TICK_SECONDS=60,
    MONITOR_BATCH_SIZE=4,
    REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
    UPLOADER_ORIGINS=[ORIGIN],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class TestDigest(TestCase):
    """Issue 17, item 3a: many servers changing in one round are one email,
    mailed once, whether the round runs embedded or on Celery workers."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.institution = make_institution(contact_email="pat@hospital.example")
        cls.servers = [
            make_server(
                cls.institution, f"PACS {n}", qido_url=f"https://pacs{n}.example/dw"
            )
            for n in range(30)
        ]

    @pytest.fixture(autouse=True)
    def _archives(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.clock = Clock(monkeypatch)
        self.archives = FakeArchives(monkeypatch)

    def fail_all(self) -> None:
        for server in self.servers:
            self.archives.answers[server.qido_url] = result("unreachable")

    def test_thirty_servers_failing_in_one_round_are_one_digest(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        self.fail_all()
        rounds.dispatch(send=rounds.check_batch)  # embedded: batches inside
        assert len(mail.outbox) == 1
        digest = mail.outbox[0]
        assert digest.to == ["oncall@registry.example"]
        assert digest.subject == (
            "[Pacsbin Integrations] 30 monitoring alerts: 30 failing"
        )
        lines = digest.body.splitlines()
        assert lines[0] == "Monitoring has 30 alerts about 30 server(s): 30 failing."
        assert lines[1] == (
            "Server health: https://registry.example.org"
            "/admin/integrations/serverhealth/"
        )
        for n in range(30):
            assert f"FAILING: PACS {n} (University Hospital)" in lines
        assert not MonitoringAlert.objects.filter(sent_at__isnull=True).exists()
        self.clock.advance(minutes=15)
        rounds.dispatch(send=rounds.check_batch)
        assert len(mail.outbox) == 1

    def test_on_celery_the_next_tick_mails_the_round_once_it_is_done(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        self.fail_all()
        batches: list[list[int]] = []
        with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
            rounds.dispatch(send=batches.append)
            assert len(batches) == 8
            # Workers take the batches over the next minutes.
            for batch in batches[:4]:
                self.clock.advance(seconds=20)
                rounds.check_batch(batch)
            self.clock.advance(seconds=30)
            rounds.dispatch(send=batches.append)  # a tick while they work
            assert mail.outbox == []
            for batch in batches[4:]:
                self.clock.advance(seconds=5)
                rounds.check_batch(batch)
            self.clock.advance(seconds=30)
            rounds.dispatch(send=batches.append)
            assert mail.outbox == []  # the newest is younger than a tick
            self.clock.advance(seconds=30)
            rounds.dispatch(send=batches.append)
        assert [m.subject for m in mail.outbox] == [
            "[Pacsbin Integrations] 30 monitoring alerts: 30 failing"
        ]

    def test_alerts_never_wait_longer_than_an_interval(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
            for server in self.servers[:16]:
                self.clock.advance(minutes=1)
                self.archives.answers[server.qido_url] = result("unreachable")
                ServerHealth.objects.filter(pk=server.pk).update(next_check_at=None)
                rounds.check_batch([server.pk])
                rounds.dispatch(send=lambda batch: None)
        # A failure a minute never lets a tick go by quiet: the oldest is
        # mailed once it has waited an interval.
        assert len(mail.outbox) == 1
        assert "alerts: 16 failing" in mail.outbox[0].subject

    def test_two_dispatchers_never_mail_one_alert_twice(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        self.fail_all()
        batches: list[list[int]] = []
        with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
            rounds.dispatch(send=batches.append)
            for batch in batches:
                rounds.check_batch(batch)
        now = self.clock.advance(minutes=5)
        first = alerts.claim(timedelta(0), now)
        assert len(first) == 30
        assert alerts.claim(timedelta(0), now) == []
        assert alerts.flush() == 0

    def test_a_worker_that_dies_before_its_commit_leaves_no_half(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        self.fail_all()
        queue = alerts.queue

        def dies(changes: Any) -> Any:
            queue(changes)
            raise SystemExit("worker killed")

        self.monkeypatch.setattr(alerts, "queue", dies)
        batches: list[list[int]] = []
        rounds.dispatch(send=batches.append)
        with pytest.raises(SystemExit):
            rounds.check_batch(batches[0])
        assert not MonitoringAlert.objects.exists()
        assert not ServerHealth.objects.filter(state="failing").exists()
        self.monkeypatch.setattr(alerts, "queue", queue)
        # Its servers are checked again next round and alerted once.
        self.clock.advance(minutes=15)
        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        rounds.dispatch(send=rounds.check_batch)
        assert [m.subject for m in mail.outbox] == [
            "[Pacsbin Integrations] 30 monitoring alerts: 30 failing"
        ]

    def test_alerts_the_mail_server_refused_go_at_the_next_tick(self) -> None:
        from tests.peers import free_port

        rounds.dispatch(send=rounds.check_batch)
        self.clock.advance(minutes=15)
        self.fail_all()
        smtp = {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": free_port(),  # nothing listens
            "EMAIL_USE_TLS": False,
            "EMAIL_TIMEOUT": 2,
        }
        with override_settings(**smtp):
            rounds.dispatch(send=rounds.check_batch)
        assert ServerHealth.objects.filter(state="failing").count() == 30
        assert MonitoringAlert.objects.filter(sent_at=None, attempts=1).count() == 30
        self.clock.advance(minutes=1)
        assert alerts.flush() == 1
        assert len(mail.outbox) == 1 and "30 failing" in mail.outbox[0].subject

    def test_the_contact_gets_their_own_servers_alert_not_the_digest(self) -> None:
        rounds.dispatch(send=rounds.check_batch)
        ServerHealth.objects.filter(pk=self.servers[3].pk).update(alert_contact=True)
        OnboardingRequest.objects.create(
            institution=self.institution,
            institution_name="University Hospital",
            contact_name="Pat",
            contact_email="pat@hospital.example",
            server_name="PACS 3",
            qido_url=self.servers[3].qido_url,
            wado_url=self.servers[3].qido_url,
            confirmed_at=timezone.now(),
            confirmation_address="pat@hospital.example",
            address_confirmed_at=timezone.now(),
            reference="OB-TEST002",
            token="u" * 40,
        )
        self.clock.advance(minutes=15)
        self.fail_all()
        rounds.dispatch(send=rounds.check_batch)
        to_contact = [m for m in mail.outbox if m.to == ["pat@hospital.example"]]
        assert [m.subject for m in to_contact] == [
            "[Pacsbin Integrations] FAILING: PACS 3 (University Hospital)"
        ]
        assert "/admin/" not in to_contact[0].body
        assert len(mail.outbox) == 2

    def test_a_digest_of_many_details_the_first_hundred(self) -> None:
        many = [
            MonitoringAlert(
                health=ServerHealth.objects.get_or_create(server=server)[0],
                kind="recovered",
                created_at=timezone.now(),
            )
            for server in self.servers
            for _ in range(5)
        ]
        MonitoringAlert.objects.bulk_create(many)
        assert alerts.flush() == 1
        body = mail.outbox[0].body
        assert "150 alerts about 30 server(s): 150 recovered" in body
        assert body.count("RECOVERED: ") == 100
        assert "And 50 more: see Server health." in body


@override_settings(
    MONITOR_ALERT_EMAILS=["oncall@registry.example"],
    MONITOR_INTERVAL_MINUTES=15,
    MONITOR_TLS_WINDOW_HOURS=24,
    REGISTRY_PUBLIC_ORIGIN="https://registry.example.org",
    UPLOADER_ORIGINS=[ORIGIN],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class TestTlsWindow(TestCase):
    """Issue 17, item 3b: two certificates behind one name (a load balancer
    mid-renewal) warned every other check."""

    @pytest.fixture(autouse=True)
    def _archives(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = Clock(monkeypatch)
        self.archives = FakeArchives(monkeypatch)

    def test_two_alternating_certificates_warn_once(self) -> None:
        server = make_server(make_institution(), "PACS")
        old = START + timedelta(days=10)
        renewed = START + timedelta(days=400)
        for check in range(2 * 96):  # two days
            expires = renewed if check % 2 else old
            self.archives.answers[server.qido_url] = result("ok", expires)
            rounds.dispatch(send=rounds.check_batch)
            self.clock.advance(minutes=15)
        assert [m.subject for m in mail.outbox] == [
            "[Pacsbin Integrations] TLS certificate expires in 10 day(s): "
            "PACS (University Hospital)"
        ]
        health = ServerHealth.objects.get(pk=server.pk)
        assert health.tls_expires_at == old and health.tls_alert_stage == 14
        # The old one gone: the renewed one counts once checks saw only it
        # for a day (since the last check of the two, which saw it).
        self.archives.answers[server.qido_url] = result("ok", renewed)
        for _ in range(95):
            rounds.dispatch(send=rounds.check_batch)
            self.clock.advance(minutes=15)
            health.refresh_from_db()
            assert health.tls_expires_at == old
        rounds.dispatch(send=rounds.check_batch)
        health.refresh_from_db()
        assert health.tls_expires_at == renewed and health.tls_alert_stage == 0
        assert len(mail.outbox) == 1

    def test_an_earlier_certificate_counts_at_once(self) -> None:
        health = ServerHealth(state="ok")
        later = START + timedelta(days=90)
        states.apply_check(health, result("ok", later), START, 0.1)
        sooner = START + timedelta(days=20)
        changes = states.apply_check(health, result("ok", sooner), START, 0.1)
        assert [(c.kind, c.tls_days) for c in changes] == [("tls", 20)]
        assert health.tls_expires_at == sooner

    def test_a_renewal_within_thirty_days_arms_its_own_warnings(self) -> None:
        health = ServerHealth(state="ok")
        old = START + timedelta(days=3)
        states.apply_check(health, result("ok", old), START, 0.1)
        assert health.tls_alert_stage == 7
        renewed = START + timedelta(days=25)
        kinds = []
        for hours in range(0, 25):
            now = START + timedelta(hours=hours)
            for change in states.apply_check(health, result("ok", renewed), now, 0.1):
                kinds.append((hours, change.kind, change.tls_days))
        assert kinds == [(24, "tls", 24)]
        assert health.tls_expires_at == renewed and health.tls_alert_stage == 30
