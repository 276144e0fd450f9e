"""The load generator: several processes of several threads, each thread one
keep-alive HTTP/1.1 connection to a loopback server, for a fixed duration.

Run as its own process (``python -m bench.load``) so that its CPU use is never
the server's; it prints one JSON object: requests, errors, latencies.

    python -m bench.load --port 8000 --path /api/v1/access --key KEY \\
        --queries queries.txt --duration 10
"""

from __future__ import annotations

import argparse
import http.client
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


def drive(
    port: int,
    path: str,
    headers: dict[str, str],
    queries: list[str],
    offset: int,
    deadline: float,
) -> Tally:
    """One connection, requests back to back until the deadline."""
    tally = Tally()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    index = offset
    while True:
        query = queries[index % len(queries)]
        index += 1
        started = time.perf_counter()
        if started >= deadline:
            break
        try:
            connection.request("GET", f"{path}?{query}", headers=headers)
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
    return tally


def process_main(
    port: int,
    path: str,
    headers: dict[str, str],
    queries: list[str],
    first: int,
    threads: int,
    start_at: float,
    duration: float,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    tallies = [Tally() for _ in range(threads)]

    def run(number: int) -> None:
        # Every process waits for the same start so all connections overlap.
        time.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + duration
        offset = (first + number) * 7919  # spread the threads over the queries
        tallies[number] = drive(port, path, headers, queries, offset, deadline)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    results.put((total.latencies, total.errors, total.bytes))


def run_load(
    port: int,
    path: str,
    key: str,
    queries: list[str],
    duration: float,
    processes: int = 2,
    threads: int = 2,
) -> dict[str, object]:
    headers = {"Authorization": f"Api-Key {key}", "Accept": "application/json"}
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 0.3
    children = [
        multiprocessing.Process(
            target=process_main,
            args=(
                port,
                path,
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
    total = Tally()
    for _ in children:
        latencies, errors, size = results.get()
        total.merge(Tally(latencies, errors, size))
    for child in children:
        child.join()
    latencies = sorted(total.latencies)
    count = len(latencies)
    return {
        "path": path,
        "duration_s": duration,
        "connections": processes * threads,
        "requests": count,
        "errors": total.errors,
        "rps": count / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_bytes": total.bytes / count if count else 0,
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
    parser.add_argument("--path", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument(
        "--queries", required=True, help="file: one query string a line"
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with open(args.queries, encoding="utf-8") as stream:
        queries = [line.strip() for line in stream if line.strip()]
    result = run_load(
        args.port,
        args.path,
        args.key,
        queries,
        args.duration,
        args.processes,
        args.threads,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
