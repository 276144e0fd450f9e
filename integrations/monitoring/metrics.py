"""/metrics: monitoring in Prometheus' text format (prometheus-client), read
from the database at scrape time so every worker's checks are counted. Off
(404) without METRICS_TOKEN; only `Authorization: Bearer <METRICS_TOKEN>`
gets it (compared in constant time), and a client that sent too many wrong
tokens gets 429 until its window ends."""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from integrations import ratelimit
from integrations.clientip import client_network
from integrations.models import DicomWebServer, ServerHealth

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Wrong tokens a client (an IPv6 client: its /64) may send per window: a
# scraper with the right token never fails; a guesser gets 10 tries in 10
# minutes, about 1,500 a day, against a token of 32+ characters (check E020).
FAILED_TOKENS_PER_WINDOW = 10
FAILED_TOKENS_WINDOW_SECONDS = 600


def now() -> float:
    """The clock (tests replace it)."""
    return time.time()


class MonitoringCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "pacsbin_servers",
            "Active servers by monitoring state.",
            labels=["state"],
        )
        counts = dict(
            ServerHealth.objects.filter(server__status=DicomWebServer.Status.ACTIVE)
            .values_list("state")
            .annotate(n=Count("pk"))
        )
        counts[ServerHealth.State.UNKNOWN] = counts.get(
            ServerHealth.State.UNKNOWN, 0
        ) + (
            DicomWebServer.objects.filter(
                status=DicomWebServer.Status.ACTIVE, health__isnull=True
            ).count()
        )
        for state in ServerHealth.State.values:
            states.add_metric([state], counts.get(state, 0))
        yield states

        up = GaugeMetricFamily(
            "pacsbin_server_up",
            "1 when the server is ok, 0 when failing (unknown and unmonitored "
            "servers are left out).",
            labels=["server_id", "server", "institution"],
        )
        duration = GaugeMetricFamily(
            "pacsbin_server_check_duration_seconds",
            "How long the server's last scheduled check took.",
            labels=["server_id"],
        )
        tls = GaugeMetricFamily(
            "pacsbin_server_tls_expiry_timestamp_seconds",
            "When the server's TLS certificate expires (Unix time).",
            labels=["server_id"],
        )
        buckets = [0] * len(DURATION_BUCKETS)
        total = 0.0
        count = 0
        rows = ServerHealth.objects.filter(
            server__status=DicomWebServer.Status.ACTIVE
        ).values_list(
            "pk",
            "server__name",
            "server__institution__name",
            "state",
            "last_check_seconds",
            "tls_expires_at",
        )
        for pk, name, institution, state, seconds, expires in rows.iterator(2000):
            if state in (ServerHealth.State.OK, ServerHealth.State.FAILING):
                up.add_metric(
                    [str(pk), name, institution],
                    1 if state == ServerHealth.State.OK else 0,
                )
            if seconds is not None:
                duration.add_metric([str(pk)], seconds)
                total += seconds
                count += 1
                for index, bound in enumerate(DURATION_BUCKETS):
                    if seconds <= bound:
                        buckets[index] += 1
            if expires is not None:
                tls.add_metric([str(pk)], expires.timestamp())
        yield up
        yield duration
        yield tls
        yield HistogramMetricFamily(
            "pacsbin_check_duration_seconds",
            "Durations of the servers' last scheduled checks.",
            buckets=[
                *((str(b), n) for b, n in zip(DURATION_BUCKETS, buckets, strict=True)),
                ("+Inf", count),
            ],
            sum_value=total,
        )


def _authorized(request: HttpRequest, token: str) -> int:
    """200 for the right token, 401 for none, 403 for a wrong one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return 401
    same = hmac.compare_digest(
        given.encode("utf-8", "backslashreplace"), token.encode("utf-8")
    )
    return 200 if same else 403


class TokenAttempts:
    """The wrong tokens one client sent in the current fixed window, counted
    in the shared cache (every worker sees the same count).

    An attempt is counted before the token is compared, and given back when
    it was no guess (the right token, or none): so however many requests a
    client sends at once, no more than FAILED_TOKENS_PER_WINDOW wrong tokens
    are ever compared, and a right token changes nobody else's count."""

    def __init__(self, request: HttpRequest) -> None:
        at = now()
        window = int(at // FAILED_TOKENS_WINDOW_SECONDS)
        self.key = f"metrics:failed-tokens:{client_network(request)}:{window}"
        self.retry_after = max(
            1, int((window + 1) * FAILED_TOKENS_WINDOW_SECONDS - at + 0.999)
        )

    def begin(self) -> bool:
        """Count one attempt; False when the client has no tries left."""
        timeout = FAILED_TOKENS_WINDOW_SECONDS + 1
        return ratelimit.count(cache, self.key, timeout) <= FAILED_TOKENS_PER_WINDOW

    def give_back(self) -> None:
        with contextlib.suppress(ValueError):  # the window ended meanwhile
            cache.decr(self.key)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off (METRICS_TOKEN is unset).")
    attempts = TokenAttempts(request)
    if not attempts.begin():
        response = HttpResponse(
            "Too many wrong metrics tokens from this address; try again in "
            f"{attempts.retry_after} seconds.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(attempts.retry_after)
        return response
    status = _authorized(request, token)
    if status != 403:
        attempts.give_back()
    if status == 401:
        response = HttpResponse(
            "Send Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if status == 403:
        return HttpResponse(
            "Wrong metrics token.\n", status=403, content_type="text/plain"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector())
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
