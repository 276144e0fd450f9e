"""The load generator: several processes of several threads, each thread one
keep-alive HTTP/1.1 connection to a loopback server, for a fixed duration.

Several paths (the access question, its floor, the bare endpoint) are measured
in rounds of one phase each, on the same connections, so all see the same
machine; the order changes from round to round (a b c, a c b, b a c, ...: every
order in turn) so that no path always runs first or always follows the same
one. Many short rounds make the median robust to bursts of other work. Run as
its own process (``python -m bench.load``) so that its CPU use is never the
server's; it prints a JSON list, one result per phase: requests, errors, req/s,
p50, p99.

    python -m bench.load --port 8000 \\
        --paths /api/v1/access,/api/v1/_floor,/api/v1/_bare \\
        --key KEY --queries queries.txt --duration 2 --rounds 10
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx/304 only
    errors: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def merge(self, other: Tally) -> None:
        self.latencies.extend(other.latencies)
        self.bytes += other.bytes
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count


def schedule(paths: list[str], rounds: int, warmup: bool) -> list[str]:
    """The path of each phase: ``rounds`` rounds of one phase per path, each
    round in the next order of all orders (for two paths: a b, b a, a b, ...),
    so that none always runs first; an optional warm-up round leads."""
    orders = list(itertools.permutations(paths))
    phases = list(paths) if warmup else []
    for number in range(rounds):
        phases += orders[number % len(orders)]
    return phases


def drive(
    port: int,
    phases: list[str],
    headers: dict[str, str],
    queries: list[str],
    offset: int,
    start: float,
    duration: float,
) -> list[Tally]:
    """One connection, requests back to back; each request counts for the
    phase in which it started. Phase k runs from start + k * duration."""
    tallies = [Tally() for _ in phases]
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    index = offset
    end = start + duration * len(phases)
    while True:
        started = time.perf_counter()
        if started >= end:
            break
        phase = int((started - start) // duration)
        tally = tallies[phase]
        query = queries[index % len(queries)]
        index += 1
        try:
            connection.request("GET", f"{phases[phase]}?{query}", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            name = type(exc).__name__
            tally.errors[name] = tally.errors.get(name, 0) + 1
            connection.close()  # reconnects on the next request
            continue
        elapsed = time.perf_counter() - started
        if response.status in (200, 304):
            tally.latencies.append(elapsed)
            tally.bytes += len(body)
        else:
            name = f"HTTP {response.status}"
            tally.errors[name] = tally.errors.get(name, 0) + 1
        if response.will_close:
            connection.close()
    connection.close()
    return tallies


def process_main(
    port: int,
    phases: list[str],
    headers: dict[str, str],
    queries: list[str],
    first: int,
    threads: int,
    start_at: float,
    duration: float,
    results: multiprocessing.Queue,
) -> None:
    per_thread: list[list[Tally]] = [[] for _ in range(threads)]

    def run(number: int) -> None:
        # Every connection follows one clock, so all are in the same phase.
        time.sleep(max(0.0, start_at - time.time()))
        start = time.perf_counter()
        offset = (first + number) * 7919  # spread the threads over the queries
        per_thread[number] = drive(
            port, phases, headers, queries, offset, start, duration
        )

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    merged = [Tally() for _ in phases]
    for tallies in per_thread:
        for total, tally in zip(merged, tallies, strict=True):
            total.merge(tally)
    results.put([(t.latencies, t.errors, t.bytes) for t in merged])


def run_load(
    port: int,
    paths: list[str],
    key: str,
    queries: list[str],
    duration: float,
    rounds: int = 1,
    processes: int = 2,
    threads: int = 2,
    warmup: bool = False,
    headers: dict[str, str] | None = None,
) -> list[dict[str, object]]:
    """Load ``paths`` in rounds of phases of ``duration`` seconds; answers one
    result per measured phase, in order, warm-up left out. ``headers``
    replace the API key's (the edge's benchmark sends a token)."""
    headers = headers or {
        "Authorization": f"Api-Key {key}",
        "Accept": "application/json",
    }
    phases = schedule(paths, rounds, warmup)
    results: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 0.3
    children = [
        multiprocessing.Process(
            target=process_main,
            args=(
                port,
                phases,
                headers,
                queries,
                n * threads,
                threads,
                start_at,
                duration,
                results,
            ),
        )
        for n in range(processes)
    ]
    for child in children:
        child.start()
    totals = [Tally() for _ in phases]
    for _ in children:
        for total, (latencies, errors, size) in zip(totals, results.get(), strict=True):
            total.merge(Tally(latencies, errors, size))
    for child in children:
        child.join()
    measured = list(zip(phases, totals, strict=True))[len(paths) if warmup else 0 :]
    return [
        summarise(path, tally, duration, processes * threads)
        for path, tally in measured
    ]


def summarise(path: str, tally: Tally, duration: float, connections: int) -> dict:
    latencies = sorted(tally.latencies)
    count = len(latencies)
    return {
        "path": path,
        "duration_s": duration,
        "connections": connections,
        "requests": count,
        "errors": tally.errors,
        "rps": count / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_bytes": tally.bytes / count if count else 0,
    }


def percentile(ordered: list[float], rank: float) -> float:
    """Nearest-rank percentile of sorted values (0 for no values)."""
    if not ordered:
        return 0.0
    position = max(0, min(len(ordered) - 1, round(rank / 100 * len(ordered)) - 1))
    return ordered[position]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--paths", required=True, help="a,b,...: the paths")
    parser.add_argument("--key", required=True)
    parser.add_argument(
        "--queries", required=True, help="file: one query string a line"
    )
    parser.add_argument("--duration", type=float, default=2.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", action="store_true", help="lead with a round")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with open(args.queries, encoding="utf-8") as stream:
        queries = [line.strip() for line in stream if line.strip()]
    result = run_load(
        args.port,
        args.paths.split(","),
        args.key,
        queries,
        args.duration,
        args.rounds,
        args.processes,
        args.threads,
        args.warmup,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
