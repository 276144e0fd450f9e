"""The gate's cost at the registry, measured from outside with wrk through
gunicorn with 2 sync workers (as bench/outside.py serves the access question).

(a) The access answer with tokens against without: the same users asking
(500 among 2,000, each approved on two servers), in one phase one of each
user's two servers enforced (a token in every answer), in the other none.
Tokens are minted once per (user, server, half a lifetime) and reused
(integrations/edge/tokens.py): after a warm-up the answer with tokens pays a
lookup and a longer body. Ratio: with/without req/s per round, the median.

(b) Edge decisions: ``GET /api/v1/edge/verify`` with the edge key and a
token of one of 500 approved users, per request at random; requests/s and
p50/p99 with the registry's decision cache warm (tokens already verified,
server and approval in the shared cache) against disabled (every decision
checks the signature and reads the server and the approval from the
database: ``BENCH_EDGE_DECISION_CACHE=off``, bench/settings.py and
bench/urls.py), two gunicorns side by side, alternate phases.

A fresh SQLite database of its own; the shared cache is Redis when one
answers on REDIS (a key prefix of its own), else per-worker memory.

    python -m bench.gate            # prints a JSON result
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import outside
from bench.env import ACCESS_PATH, base_env

VERIFY_PATH = "/api/v1/edge/verify"
REDIS = "redis://127.0.0.1:6379/13"
USERS = 2_000
SERVERS = 200  # user n: servers 2k and 2k+1, k = n mod SERVERS/2
ASKING = 500  # users in the load (each worker remembers all their tokens)
MIN_RATIO_TOKENS = 0.9
DECISION_CACHE_OFF = "BENCH_EDGE_DECISION_CACHE"


def email(number: int) -> str:
    return f"reader{number:05d}@hospital{number % 37}.example.org"


def redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def seed(edge_users: int) -> tuple[str, list[int], str, int]:
    """The registry: servers, approvals, an access key and an enforced
    server with an edge key. (access key, even servers, edge key, its id)."""
    from integrations import registry
    from integrations.models import ApiKey, ApprovedUser, DicomWebServer, Institution

    institution = Institution.objects.create(name="Bench Hospital")

    def server(name: str, enforced: bool = False) -> DicomWebServer:
        url = f"https://{name.lower().replace(' ', '-')}.example.org/dicom-web"
        return DicomWebServer(
            institution=institution,
            name=name,
            qido_url=url,
            wado_url=url,
            status=DicomWebServer.Status.ACTIVE,
            edge_enforced=enforced,
        )

    servers = DicomWebServer.objects.bulk_create(
        [server(f"PACS {n:04d}") for n in range(SERVERS)]
    )
    half = SERVERS // 2
    ApprovedUser.objects.bulk_create(
        [
            ApprovedUser.objects.build(servers[2 * (n % half) + side], email(n))
            for n in range(USERS)
            for side in (0, 1)
        ],
        batch_size=2_000,
    )
    gated = server("Gated PACS", enforced=True)
    gated.save()
    ApprovedUser.objects.bulk_create(
        [
            ApprovedUser.objects.build(gated, f"edge-{email(n)}")
            for n in range(edge_users)
        ],
        batch_size=2_000,
    )
    edge_key = registry.replace_edge_key(gated)
    _key, raw = ApiKey.objects.create_key("bench-gate", ApiKey.Scope.ACCESS)
    return raw, [s.pk for s in servers[0::2]], edge_key, gated.pk


def set_enforced(server_ids: list[int], enforced: bool) -> None:
    from integrations.models import DicomWebServer

    DicomWebServer.objects.filter(pk__in=server_ids).update(edge_enforced=enforced)


def tokens_for(server_id: int, count: int) -> list[str]:
    """Tokens the access answer gives (signed with the registry's key, made
    on first use in the bench's database, as every worker reads it)."""
    from integrations.edge import tokens

    return [tokens.token_for(f"edge-{email(n)}", server_id).value for n in range(count)]


def warm_up(
    port: int,
    paths: list[str],
    headers: dict[str, str],
    tokens: list[str] | None = None,
    passes: int = 6,
) -> None:
    """Every path (or every token on the one path) asked ``passes`` times in
    a shuffled order: each of the 2 workers, taking whichever request comes,
    misses a given one with a chance of 2**-passes."""
    import random
    import urllib.request

    bearers: list[str | None] = list(tokens) if tokens else [None]
    asks = [(p, t) for p in paths for t in bearers] * passes
    random.Random(5).shuffle(asks)
    for path, token in asks:
        sent = dict(headers)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=sent)
        with urllib.request.urlopen(request, timeout=30) as answer:
            if answer.status not in (200, 204):
                raise SystemExit(f"warm-up {path}: HTTP {answer.status}")


Plan = tuple[int, str, list[str], Callable[[], outside.CpuSample]]


def alternate(
    plans: dict[str, Plan],
    duration: int,
    rounds: int,
    before: dict[str, Any] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """``rounds`` rounds of one wrk phase per plan (port, path, wrk.lua
    arguments, the server's CPU sampler), the order alternating;
    ``before[name]()`` runs before a phase. Any error stops the run."""
    names = list(plans)
    measured = []
    for number in range(rounds):
        result = {}
        for name in names if number % 2 == 0 else names[::-1]:
            if before and name in before:
                before[name]()
            port, path, args, cpu = plans[name]
            phase = outside.phase(
                port, path, args, duration, outside.THREADS, outside.CONNECTIONS, cpu
            )
            if phase["errors"] or not phase["requests"]:
                raise SystemExit(f"wrk {name}: {phase['requests']}, {phase['errors']}")
            result[name] = phase
        measured.append(result)
    return measured


def medians(rounds: list[dict[str, dict[str, Any]]], name: str) -> dict[str, float]:
    return {
        f"{name}_{value}": statistics.median(r[name][value] for r in rounds)
        for value in ("rps", "p50_ms", "p99_ms", "mean_bytes", "cpu_us")
    }


def run(duration: int = 3, rounds: int = 6) -> dict[str, Any]:
    import django

    from bench.measure import free_port, start_gunicorn

    work = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    os.environ.update(base_env())
    os.environ["SQLITE_PATH"] = str(work / "gate.sqlite3")
    cache = "per-worker memory (no Redis answered)"
    if redis_answers(REDIS):
        os.environ["CACHE_URL"] = REDIS
        os.environ["CACHE_KEY_PREFIX"] = f"bench-gate-{secrets.token_hex(4)}"
        cache = f"Redis ({REDIS})"
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    # Production static files (the manifest), as gunicorn wants them.
    call_command("collectstatic", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0, interactive=False)

    key, enforced_ids, edge_key, gated = seed(ASKING)
    emails_file, tokens_file = work / "emails.txt", work / "tokens.txt"
    emails_file.write_text("".join(f"{email(n)}\n" for n in range(ASKING)))
    tokens = tokens_for(gated, ASKING)
    tokens_file.write_text("".join(f"{t}\n" for t in tokens))
    connection.close()

    warm_port, cold_port = free_port(), free_port()
    warm = start_gunicorn(warm_port, 400, work, sync=True)
    os.environ[DECISION_CACHE_OFF] = "off"
    try:
        cold = start_gunicorn(cold_port, 400, work, sync=True)
    finally:
        del os.environ[DECISION_CACHE_OFF]
    warm_cpu = outside.server_cpu(warm.pid)
    access_args = ["access", str(emails_file), key]
    verify_args = ["verify", str(tokens_file), edge_key]
    try:
        # Warm-ups: every worker mints (and then remembers) the asking users'
        # tokens, and checks the edge tokens' signatures once.
        set_enforced(enforced_ids, True)
        warm_up(
            warm_port,
            [f"{ACCESS_PATH}?email={email(n)}" for n in range(ASKING)],
            {"Authorization": f"Api-Key {key}"},
        )
        for port in (warm_port, cold_port):
            warm_up(port, [VERIFY_PATH], {"X-Edge-Key": edge_key}, tokens)
        access = alternate(
            {
                "tokens": (warm_port, ACCESS_PATH, access_args, warm_cpu),
                "plain": (warm_port, ACCESS_PATH, access_args, warm_cpu),
            },
            duration,
            rounds,
            before={
                "tokens": lambda: set_enforced(enforced_ids, True),
                "plain": lambda: set_enforced(enforced_ids, False),
            },
        )
        verify = alternate(
            {
                "warm": (warm_port, VERIFY_PATH, verify_args, warm_cpu),
                "cold": (
                    cold_port,
                    VERIFY_PATH,
                    verify_args,
                    outside.server_cpu(cold.pid),
                ),
            },
            duration,
            rounds,
        )
    finally:
        for server in (warm, cold):
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        connection.close()
        shutil.rmtree(work, ignore_errors=True)
    ratios = [r["tokens"]["rps"] / r["plain"]["rps"] for r in access]
    # The same comparison by the server's CPU per answer: what other
    # programs on a shared machine do is left out of it.
    cpu_ratio = statistics.median(
        r["plain"]["cpu_us"] / r["tokens"]["cpu_us"] for r in access
    )
    result: dict[str, Any] = {
        "gunicorn": "2 sync workers (each)",
        "wrk": f"{outside.THREADS} threads, {outside.CONNECTIONS} connections",
        "cache": cache,
        "users_asking": ASKING,
        "rounds": rounds,
        "phase_s": duration,
        "access": {
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cpu_ratio": cpu_ratio,
            **medians(access, "tokens"),
            **medians(access, "plain"),
        },
        "verify": {
            **medians(verify, "warm"),
            **medians(verify, "cold"),
            "warm_over_cold": statistics.median(
                r["warm"]["rps"] / r["cold"]["rps"] for r in verify
            ),
        },
    }
    ratio = result["access"]["ratio"]
    result["target"] = f"access tokens/plain {ratio:.2f} (≥ {MIN_RATIO_TOKENS}) " + (
        "✓" if ratio >= MIN_RATIO_TOKENS else "✗"
    )
    return result


def table(result: dict[str, Any]) -> str:
    a, v = result["access"], result["verify"]
    return "\n".join(
        [
            "The gate at the registry (wrk, gunicorn 2 sync workers, "
            f"cache: {result['cache']}):",
            f"  access, a token per answer {a['tokens_rps']:>7.0f} req/s  p50 "
            f"{a['tokens_p50_ms']:.2f} ms  p99 {a['tokens_p99_ms']:.2f} ms  "
            f"{a['tokens_mean_bytes']:.0f} B  CPU {a['tokens_cpu_us']:.0f} µs",
            f"  access, no token           {a['plain_rps']:>7.0f} req/s  p50 "
            f"{a['plain_p50_ms']:.2f} ms  p99 {a['plain_p99_ms']:.2f} ms  "
            f"{a['plain_mean_bytes']:.0f} B  CPU {a['plain_cpu_us']:.0f} µs",
            f"  {result['target']} (rounds {a['ratio_min']:.2f}-{a['ratio_max']:.2f};"
            f" by CPU per answer {a['cpu_ratio']:.2f})",
            f"  edge verify, cache warm    {v['warm_rps']:>7.0f} req/s  p50 "
            f"{v['warm_p50_ms']:.2f} ms  p99 {v['warm_p99_ms']:.2f} ms  "
            f"CPU {v['warm_cpu_us']:.0f} µs",
            f"  edge verify, cache off     {v['cold_rps']:>7.0f} req/s  p50 "
            f"{v['cold_p50_ms']:.2f} ms  p99 {v['cold_p99_ms']:.2f} ms  "
            f"CPU {v['cold_cpu_us']:.0f} µs",
            f"  warm/off {v['warm_over_cold']:.2f}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if not outside.available():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    result = run(args.duration, args.rounds)
    print(table(result), file=sys.stderr)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
