"""Concurrent writers against a real gunicorn (2 workers x 4 threads) on a
database of its own, of the suite's engine: SQLite (the embedded default),
named both ways (SQLITE_PATH and DATABASE_URL=sqlite:///path), or, when the
suite runs with DATABASE_URL, PostgreSQL.

Every writer is told the truth (each email is "added" for exactly one of them,
"existing" for the others), nobody gets an error, and the database ends in
the state the answers described.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

from tests.served import Served, served, suite_postgres_url

pytestmark = pytest.mark.load

WRITERS = 8
EMAILS = [f"user{number:03d}@load.example" for number in range(200)]
BATCH = 50
MIXED_SECONDS = float(os.environ.get("LOAD_MIXED_SECONDS", "15"))


@pytest.fixture(scope="module", params=["SQLITE_PATH", "DATABASE_URL"])
def instance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """On SQLite, once per way of naming the file: both get the same
    hardening (busy timeout, IMMEDIATE, WAL, mmap)."""
    postgres_url = suite_postgres_url()
    if postgres_url is not None and request.param != "DATABASE_URL":
        pytest.skip("PostgreSQL is named by DATABASE_URL only")
    # The throttle runs (its shared counter is part of the load) but never
    # refuses: the test counts errors, not 429s.
    with served(
        tmp_path_factory.mktemp("load"),
        "load",
        postgres_url=postgres_url,
        sqlite_url=request.param == "DATABASE_URL",
        ACCESS_THROTTLE_RATE="1000000/min",
    ) as running:
        yield running


class Client:
    """One keep-alive connection; every answer is recorded, none raises."""

    def __init__(self, instance: Served) -> None:
        parts = urlsplit(instance.url)
        self.connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=60
        )
        self.headers = {**instance.headers, "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        try:
            self.connection.request(method, path, body=payload, headers=self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            return 0, f"{type(exc).__name__}: {exc}"
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw[:300].decode(errors="replace")

    def close(self) -> None:
        self.connection.close()


def run_threads(count: int, target: Any) -> list[Any]:
    """``target(index)`` in ``count`` threads started together; their answers."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = target(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return results


def approved(instance: Served) -> list[str]:
    """Every approved email of the test server, read back through the API."""
    client = Client(instance)
    emails: list[str] = []
    page = 1
    while True:
        path = f"/api/v1/servers/{instance.server_id}/approved-users/"
        status, body = client.call("GET", f"{path}?page_size=500&page={page}")
        assert status == 200, body
        emails += [row["email"] for row in body["results"]]
        if not body["next"]:
            break
        page += 1
    client.close()
    return emails


def errors_of(answers: list[tuple[str, int, Any]]) -> list[tuple[str, int, Any]]:
    return [answer for answer in answers if not 200 <= answer[1] < 300]


class TestConcurrentWritersOnAServedInstance:
    def test_the_embedded_database_runs_in_wal_mode(self, instance: Served) -> None:
        if instance.engine != "sqlite":
            pytest.skip("SQLite only: the suite runs on PostgreSQL")
        with closing(sqlite3.connect(instance.sqlite_path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    def test_writers_of_the_same_emails_are_each_told_the_truth(
        self, instance: Served
    ) -> None:
        path = f"/api/v1/servers/{instance.server_id}/approved-users/"

        def writer(index: int) -> list[tuple[str, int, Any]]:
            client = Client(instance)
            answers = []
            for start in range(0, len(EMAILS), BATCH):
                batch = EMAILS[start : start + BATCH]
                status, body = client.call("POST", path, {"emails": batch})
                answers.append(("POST", status, body))
            client.close()
            return answers

        started = time.monotonic()
        results = run_threads(WRITERS, writer)
        answers = [answer for result in results for answer in result]
        assert errors_of(answers) == [], instance.log.read_text()[-3000:]

        added = [email for _m, _s, body in answers for email in body["added"]]
        existing = [email for _m, _s, body in answers for email in body["existing"]]
        assert sorted(added) == EMAILS  # each email added for exactly one writer
        assert len(existing) == (WRITERS - 1) * len(EMAILS)
        assert sorted(approved(instance)) == EMAILS
        assert time.monotonic() - started < 60

    def test_readers_and_writers_mixed_see_no_error_and_lose_nothing(
        self, instance: Served
    ) -> None:
        """Readers ask the access question while writers add and delete
        emails of their own; the end state is what each writer was told."""
        path = f"/api/v1/servers/{instance.server_id}/approved-users/"
        before = set(approved(instance))
        deadline = time.monotonic() + MIXED_SECONDS

        def writer(index: int) -> tuple[list[Any], set[str]]:
            client = Client(instance)
            answers: list[Any] = []
            present: set[str] = set()
            rng = random.Random(index)
            number = 0
            while time.monotonic() < deadline:
                batch = [f"w{index}-{number + i}@mixed.example" for i in range(5)]
                number += 5
                status, body = client.call("POST", path, {"emails": batch})
                answers.append(("POST", status, body))
                if status == 200:
                    assert sorted(body["added"]) == sorted(batch), body
                    present.update(body["added"])
                if present and rng.random() < 0.5:
                    gone = rng.choice(sorted(present))
                    status, body = client.call("DELETE", path + quote(gone))
                    answers.append(("DELETE", status, body))
                    if status == 204:
                        present.discard(gone)
            client.close()
            return answers, present

        def reader(index: int) -> tuple[list[Any], set[str]]:
            client = Client(instance)
            answers: list[Any] = []
            rng = random.Random(100 + index)
            while time.monotonic() < deadline:
                email = rng.choice(
                    [
                        *EMAILS[:20],
                        f"w{rng.randrange(4)}-{rng.randrange(50)}@mixed.example",
                    ]
                )
                query = urlencode({"email": email})
                status, body = client.call("GET", f"/api/v1/access?{query}")
                answers.append(("GET", status, body))
            client.close()
            return answers, set()

        def either(index: int) -> tuple[list[Any], set[str]]:
            return writer(index) if index < 4 else reader(index - 4)

        results = run_threads(8, either)
        answers = [answer for result, _present in results for answer in result]
        assert errors_of(answers) == [], instance.log.read_text()[-3000:]
        writes = sum(1 for method, _s, _b in answers if method != "GET")
        reads = len(answers) - writes
        assert writes > 20 and reads > 20, (writes, reads)

        told = set().union(*(present for _result, present in results))
        assert set(approved(instance)) == before | told
