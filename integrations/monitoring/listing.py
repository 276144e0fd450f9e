"""How the monitoring list reads (compare healthchecks.io's dashboard): each
server by what is known of it, totals by that, relative times with the
exact time at hand, and a sparkline of its last checks drawn on the server.

A first failed check leaves a server's state as it was (``unknown`` or
``ok``) until MONITOR_FAILING_AFTER failures in a row (states.apply_check),
so the list does not show the stored state alone: such a server is
"confirming", labelled by the outcome it saw, never "never checked"."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from integrations.models import CheckOutcome, ConnectivityCheck, ServerHealth

State = ServerHealth.State

# What the list shows, in the order it lists them: what needs attention first.
SHOWN = ["failing", "confirming", "unknown", "up", "paused"]
SHOWN_LABELS = {
    "failing": "Failing",
    "confirming": "Confirming",
    "unknown": "Unknown",
    "up": "Up",
    "paused": "Paused",
}
# The badge colours of the stored states the shown ones resemble.
BADGE = {
    "failing": "failing",
    "confirming": "confirming",
    "unknown": "unknown",
    "up": "ok",
    "paused": "unmonitored",
}
# The sparkline: this many of the latest scheduled checks, within this long.
SPARK_CHECKS = 20
SPARK_WINDOW = timedelta(days=7)
SPARK_STEP, SPARK_BAR, SPARK_HEIGHT = 6, 4, 16
SPARK_COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "blocked": "#8a94a6"}


def conditions() -> dict[str, Q]:
    """Each shown state as a filter on ServerHealth rows."""
    return {
        "failing": Q(state=State.FAILING),
        "confirming": Q(state__in=[State.OK, State.UNKNOWN])
        & Q(consecutive_failures__gt=0),
        "unknown": Q(state=State.UNKNOWN, consecutive_failures=0),
        "up": Q(state=State.OK, consecutive_failures=0),
        "paused": Q(state=State.UNMONITORED),
    }


def rank() -> Case:
    """The position of a row's shown state in SHOWN (for ordering)."""
    found = conditions()
    return Case(
        *(When(found[key], then=Value(i)) for i, key in enumerate(SHOWN)),
        default=Value(len(SHOWN)),
        output_field=IntegerField(),
    )


def totals(queryset: QuerySet[ServerHealth]) -> dict[str, int]:
    """How many rows are in each shown state: one query."""
    found = conditions()
    counts = queryset.aggregate(
        **{key: Count("pk", filter=found[key]) for key in SHOWN}
    )
    return {key: counts[key] or 0 for key in SHOWN}


def shown_state(health: ServerHealth) -> str:
    if health.state == State.FAILING:
        return "failing"
    if health.state == State.UNMONITORED:
        return "paused"
    if health.consecutive_failures > 0:
        return "confirming"
    return "up" if health.state == State.OK else "unknown"


def _outcome(value: str) -> str:
    return CheckOutcome(value).label if value in CheckOutcome.values else "Not ok"


def words_for(value: datetime, now: datetime) -> str:
    """``value`` relative to ``now``: "just now", "3 min ago", "in 5 min"."""
    seconds = (now - value).total_seconds()
    left = abs(seconds)
    if left < 60:
        return "just now" if seconds >= 0 else "in under a minute"
    minutes = int(left // 60)
    if minutes < 60:
        text = f"{minutes} min"
    elif minutes < 48 * 60:
        text = f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes < 600 else "")
    else:
        text = f"{minutes // 1440} days"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def exact(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def relative(value: datetime | None, now: datetime) -> SafeString:
    """A relative time, the exact one in its title ("—" for none)."""
    if value is None:
        return mark_safe("—")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        exact(value),
        words_for(value, now),
    )


def label(health: ServerHealth, now: datetime) -> SafeString:
    """The state cell: a badge and what is known, in words."""
    key = shown_state(health)
    badge = format_html(
        '<span class="pi-badge pi-state-{}">{}</span>', BADGE[key], SHOWN_LABELS[key]
    )
    if key == "failing":
        detail = format_html(
            "since {} — {}", relative(health.since, now), _outcome(health.outcome)
        )
    elif key == "confirming":
        times = health.consecutive_failures
        detail = format_html(
            "{} {} — confirming{}",
            _outcome(health.outcome),
            "once" if times == 1 else f"{times} times in a row",
            format_html(", next check {}", relative(health.next_check_at, now))
            if health.next_check_at
            else "",
        )
    elif key == "up":
        detail = format_html("since {}", relative(health.since, now))
    elif key == "paused":
        detail = mark_safe("out of the registry's reach: browser checks only")
    elif health.last_checked_at is None:
        detail = mark_safe("never checked")
    else:
        detail = format_html("last checked {}", relative(health.last_checked_at, now))
    return format_html('{} <span class="pi-state-detail">{}</span>', badge, detail)


@dataclass(frozen=True)
class Spark:
    at: datetime
    outcome: str

    @property
    def kind(self) -> str:
        if self.outcome == CheckOutcome.OK:
            return "ok"
        return "blocked" if self.outcome == CheckOutcome.BLOCKED else "failed"


def recent_checks(server_ids: Iterable[int], now: datetime) -> dict[int, list[Spark]]:
    """The last SPARK_CHECKS scheduled checks of each server, oldest first:
    one query for any number of servers (a window function numbers each
    server's checks, newest first)."""
    ids = list(server_ids)
    if not ids:
        return {}
    numbered = (
        ConnectivityCheck.objects.filter(
            server_id__in=ids,
            source=ConnectivityCheck.Source.SERVER,
            created_at__gte=now - SPARK_WINDOW,
        )
        .annotate(
            number=Window(
                RowNumber(),
                partition_by=[F("server_id")],
                order_by=[F("created_at").desc(), F("pk").desc()],
            )
        )
        .filter(number__lte=SPARK_CHECKS)
        .values_list("server_id", "created_at", "outcome")
    )
    found: dict[int, list[Spark]] = defaultdict(list)
    for server_id, at, outcome in numbered:
        found[server_id].append(Spark(at, outcome))
    return {key: sorted(sparks, key=lambda s: s.at) for key, sparks in found.items()}


def sparkline(sparks: list[Spark], now: datetime) -> SafeString:
    """Inline SVG, one bar per check (oldest left), with its text alternative:
    the counts and the newest check, and each bar's own title."""
    if not sparks:
        return format_html('<span class="pi-spark-none">{}</span>', "no checks yet")
    failed = sum(1 for s in sparks if s.kind != "ok")
    newest = sparks[-1]
    text = (
        f"Last {len(sparks)} check(s), oldest first: {len(sparks) - failed} ok, "
        f"{failed} not ok; the newest {_outcome(newest.outcome)}, "
        f"{words_for(newest.at, now)} ({exact(newest.at)})."
    )
    width = SPARK_CHECKS * SPARK_STEP
    offset = (SPARK_CHECKS - len(sparks)) * SPARK_STEP
    bars = "".join(
        f'<rect x="{offset + i * SPARK_STEP}" y="0" width="{SPARK_BAR}" '
        f'height="{SPARK_HEIGHT}" fill="{SPARK_COLOURS[s.kind]}" '
        f'class="pi-spark-{s.kind}"><title>{escape(_outcome(s.outcome))} '
        f"{exact(s.at)}</title></rect>"
        for i, s in enumerate(sparks)
    )
    # Every value written is a number, a fixed word or escaped.
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pi-spark" role="img" '
        f'width="{width}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {width} {SPARK_HEIGHT}" aria-label="{escape(text)}">'
        f"<title>{escape(text)}</title>{bars}</svg>"
    )
