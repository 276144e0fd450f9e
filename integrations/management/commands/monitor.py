"""python manage.py monitor [--once]"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone

from integrations import expiry
from integrations.accessreviews import flows as review_flows
from integrations.models import ServerHealth
from integrations.monitoring import alerts, rounds, tasks

logger = logging.getLogger(__name__)
# As beat's "approvals-notify-expiring" (settings.CELERY_BEAT_SCHEDULE).
EXPIRY_NOTICE_SECONDS = 900.0
# How often the loop runs the access reviews (as beat's entry does).
REVIEW_SECONDS = 600.0


class Command(BaseCommand):
    help = (
        "Monitoring's dispatcher. --once: one round in the foreground (claim "
        "every due server, check them, wait for the checks, print a summary; "
        "for cron or a test; it runs the access reviews too). Without "
        "--once: a round every "
        "MONITOR_TICK_SECONDS until stopped, pruning every hour and the notice "
        "of approvals ending within a week every 15 minutes: the "
        "embedded scheduler when CELERY_BROKER_URL is unset (with a broker, "
        "run celery beat instead, or this loop as the one dispatcher). The "
        "loop also runs the access reviews' schedule every ten minutes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit")
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            help="seconds --once waits for the workers' checks "
            "(default: MONITOR_TASK_TIME_LIMIT + 30)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.once(options["wait"])
            return
        self.loop()

    def round(self) -> tuple[list[int], float]:
        started = time.monotonic()
        claimed = tasks.send_round()
        return claimed, time.monotonic() - started

    def once(self, wait: float | None) -> None:
        since = timezone.now()
        claimed, _ = self.round()
        started = time.monotonic()
        timeout = settings.MONITOR_TASK_TIME_LIMIT + 30 if wait is None else wait
        missing = rounds.wait_for(claimed, since, timeout)
        # The workers' alerts of this round, now that its checks are done.
        alerts.flush()
        expiry.notify_expiring()
        self.run_access_reviews()
        seconds = time.monotonic() - started
        self.stdout.write(
            f"Checked {len(claimed) - len(missing)} of {len(claimed)} due "
            f"server(s) in {seconds:.1f} s."
        )
        self.stdout.write(self.states())
        if missing:
            raise CommandError(
                f"{len(missing)} server(s) were not checked within {timeout:g} s "
                f"(are workers running on queue {settings.MONITOR_QUEUE!r}?): "
                + ", ".join(map(str, missing[:20]))
            )

    def states(self) -> str:
        counts = dict(ServerHealth.objects.values_list("state").annotate(n=Count("pk")))
        return "States: " + ", ".join(
            f"{state} {counts.get(state, 0)}" for state in ServerHealth.State.values
        )

    def run_access_reviews(self) -> None:
        """The access reviews' run (beat's entry when a broker is set)."""
        started, overdue = review_flows.run()
        if started or overdue:
            self.stdout.write(
                f"{timezone.now():%H:%M:%S} access reviews: {len(started)} "
                f"sent, {len(overdue)} overdue."
            )

    def loop(self) -> None:
        mode = (
            "embedded (no broker: checks run in this process)"
            if settings.CELERY_TASK_ALWAYS_EAGER
            else f"dispatching to Celery workers on queue {settings.MONITOR_QUEUE!r}"
        )
        self.stdout.write(
            f"Monitoring every {settings.MONITOR_INTERVAL_MINUTES:g} min, "
            f"looking every {settings.MONITOR_TICK_SECONDS:g} s; {mode}. "
            "Ctrl-C stops it."
        )
        pruned_at = notified_at = 0.0
        reviewed_at = -REVIEW_SECONDS
        try:
            while True:
                tick = time.monotonic()
                try:
                    if tick - pruned_at > 3600:
                        rounds.prune()
                        pruned_at = tick
                    if tick - notified_at > EXPIRY_NOTICE_SECONDS:
                        expiry.notify_expiring()
                        notified_at = tick
                    if tick - reviewed_at >= REVIEW_SECONDS:
                        reviewed_at = tick
                        self.run_access_reviews()
                    claimed, seconds = self.round()
                except Exception:
                    # A locked database or a broker that is down: try again
                    # next tick rather than stop watching.
                    logger.exception("Monitoring round failed; retrying next tick")
                    claimed, seconds = [], 0.0
                if claimed:
                    self.stdout.write(
                        f"{timezone.now():%H:%M:%S} {len(claimed)} server(s) "
                        f"checked or sent in {seconds:.1f} s. {self.states()}"
                    )
                    self.stdout.flush()
                time.sleep(
                    max(0.0, settings.MONITOR_TICK_SECONDS - (time.monotonic() - tick))
                )
        except KeyboardInterrupt:
            self.stdout.write("Monitoring stopped.")
