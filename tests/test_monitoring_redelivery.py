"""A batch lost with its worker is redone, never checked twice: batches are
acknowledged late (a dead worker process hands its batch back at once; a
worker gone whole leaves it to Redis for MONITOR_REDELIVER_SECONDS, not the
broker's hour), and each batch carries its claim so a late copy skips the
servers a later round took. In process here; tests/test_faults.py kills a
real Celery worker mid-batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import TestCase
from django.utils import timezone

from integrations.models import ConnectivityCheck, ServerHealth
from integrations.monitoring import tasks
from tests.factories import make_institution, make_server
from tests.test_monitoring import FakeArchives, result

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_batches_are_acknowledged_late_and_come_back_within_a_round() -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    # Longer than a batch may run (never handed out while running), shorter
    # than the default 15-minute interval (back before the next round).
    assert settings.MONITOR_TASK_TIME_LIMIT < visibility < 15 * 60
    assert visibility == settings.MONITOR_REDELIVER_SECONDS


class TestRedeliveredBatches(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = make_institution("University Hospital")
        for n in range(3):
            make_server(institution, f"PACS {n}", qido_url=f"https://p{n}.example/dw")

    @pytest.fixture(autouse=True)
    def _archives(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.archives = FakeArchives(monkeypatch)

    def sent_round(self, now: datetime) -> list[tuple[list[int], str]]:
        """One round as beat runs it, the batches captured instead of sent."""
        sent: list[tuple[list[int], str]] = []
        delay = tasks.check_batch.delay
        tasks.check_batch.delay = lambda ids, claim: sent.append((ids, claim))  # type: ignore[method-assign]
        try:
            tasks.send_round(now)
        finally:
            tasks.check_batch.delay = delay  # type: ignore[method-assign]
        return sent

    def test_a_batch_lost_before_its_check_is_checked_when_it_comes_back(
        self,
    ) -> None:
        ((ids, claim),) = self.sent_round(NOW)
        # The worker died; the broker hands the same message out again.
        assert tasks.check_batch.run(ids, claim) == 3
        assert ConnectivityCheck.objects.count() == 3

    def test_a_late_copy_skips_servers_a_later_round_claimed(self) -> None:
        ((ids, claim),) = self.sent_round(NOW)
        later = NOW + timedelta(minutes=settings.MONITOR_INTERVAL_MINUTES + 1)
        ((again, new_claim),) = self.sent_round(later)
        assert sorted(again) == sorted(ids) and new_claim != claim
        with self.assertLogs("integrations.monitoring.rounds", "WARNING") as logs:
            assert tasks.check_batch.run(ids, claim) == 0  # the late copy
        assert "claimed or checked again since" in logs.output[0]
        assert tasks.check_batch.run(again, new_claim) == 3
        assert ConnectivityCheck.objects.count() == 3

    def test_a_copy_of_a_recorded_batch_is_not_checked_twice(self) -> None:
        """The worker recorded the checks, then died before acknowledging."""
        ((ids, claim),) = self.sent_round(timezone.now())
        assert tasks.check_batch.run(ids, claim) == 3
        with self.assertLogs("integrations.monitoring.rounds", "WARNING"):
            assert tasks.check_batch.run(ids, claim) == 0
        assert ConnectivityCheck.objects.count() == 3

    def test_a_copy_of_a_recorded_failing_batch_is_not_checked_twice(self) -> None:
        # Now: the failure's sooner re-check is due before the claim ends.
        ((ids, claim),) = self.sent_round(timezone.now())
        self.archives.answers = {
            f"https://p{n}.example/dw": result("cors_missing") for n in range(3)
        }
        assert tasks.check_batch.run(ids, claim) == 3  # recorded, sooner re-check
        with self.assertLogs("integrations.monitoring.rounds", "WARNING"):
            assert tasks.check_batch.run(ids, claim) == 0  # ack lost, redelivered
        assert ConnectivityCheck.objects.count() == 3
        assert ServerHealth.objects.filter(consecutive_failures=1).count() == 3
