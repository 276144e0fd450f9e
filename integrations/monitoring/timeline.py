"""A server's health over the last 7 days as inline SVG, drawn on the server
(no script, no CDN): one band coloured by each scheduled check's outcome
until the next check, with day marks. Text in it is escaped."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from integrations.models import CheckOutcome, ConnectivityCheck, DicomWebServer
from integrations.monitoring.states import interval

DAYS = 7
WIDTH, HEIGHT = 700, 58
BAND_TOP, BAND_HEIGHT = 6, 26
COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "blocked": "#8a94a6"}
NO_DATA = "#e5e5e5"


def _kind(outcome: str) -> str:
    if outcome == CheckOutcome.OK:
        return "ok"
    return "blocked" if outcome == CheckOutcome.BLOCKED else "failed"


def segments(
    checks: list[tuple[datetime, str]], start: datetime, now: datetime
) -> list[tuple[datetime, datetime, str]]:
    """(from, to, kind) runs: a check's colour lasts until the next check, at
    most two intervals (then the band shows no data)."""
    gap = max(interval() * 2, timedelta(minutes=1))
    runs: list[tuple[datetime, datetime, str]] = []
    for index, (at, outcome) in enumerate(checks):
        following = checks[index + 1][0] if index + 1 < len(checks) else now
        begin, end = max(at, start), min(following, at + gap, now)
        if end <= begin:
            continue
        kind = _kind(outcome)
        if runs and runs[-1][2] == kind and runs[-1][1] >= begin:
            runs[-1] = (runs[-1][0], end, kind)
        else:
            runs.append((begin, end, kind))
    return runs


def svg(server: DicomWebServer, now: datetime | None = None) -> SafeString:
    now = now or timezone.now()
    start = now - timedelta(days=DAYS)
    checks = list(
        ConnectivityCheck.objects.filter(
            server=server,
            source=ConnectivityCheck.Source.SERVER,
            created_at__gte=start - interval() * 2,
        )
        .order_by("created_at", "pk")
        .values_list("created_at", "outcome")
    )
    span = (now - start).total_seconds()

    def x(at: datetime) -> float:
        return round((at - start).total_seconds() / span * WIDTH, 2)

    failed = sum(1 for at, outcome in checks if at >= start and _kind(outcome) != "ok")
    shown = sum(1 for at, _ in checks if at >= start)
    label = (
        f"Health of {server.name} over the last {DAYS} days: {shown} scheduled "
        f"check(s), {failed} not ok."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pi-timeline" role="img" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<rect x="0" y="{BAND_TOP}" width="{WIDTH}" height="{BAND_HEIGHT}" '
        f'fill="{NO_DATA}"/>',
    ]
    for begin, end, kind in segments(checks, start, now):
        width = max(x(end) - x(begin), 0.5)
        parts.append(
            f'<rect x="{x(begin)}" y="{BAND_TOP}" width="{round(width, 2)}" '
            f'height="{BAND_HEIGHT}" fill="{COLOURS[kind]}" class="pi-tl-{kind}">'
            f"<title>{kind} {begin:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
            "</title></rect>"
        )
    day = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day < now:
        parts.append(
            f'<line x1="{x(day)}" x2="{x(day)}" y1="{BAND_TOP}" '
            f'y2="{BAND_TOP + BAND_HEIGHT + 4}" stroke="#555" stroke-width="1"/>'
            f'<text x="{x(day) + 2}" y="{HEIGHT - 8}" font-size="11" '
            f'fill="#333">{day:%a %d}</text>'
        )
        day += timedelta(days=1)
    parts.append("</svg>")
    # Every value written above is a number, a date or escaped.
    return mark_safe("".join(parts))
