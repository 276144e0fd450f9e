"""The audit export through a real gunicorn, read slowly: a download that
outlasts gunicorn's worker timeout arrives whole with the threaded workers the
README's production line runs, where a sync worker is killed mid-stream and
the auditor's file silently ends short."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.served import Served, base_env, manage, served, suite_postgres_url

pytestmark = pytest.mark.load

# More CSV (about 7 MB) than loopback's socket buffers hold (4 MB), so the
# server's writes wait for the slow reader.
APPROVALS = 30_000
# bench/audit.py's seed: a "created" record per approval, a "changed" one
# and a day of use for one in ten.
SEEDED = APPROVALS * 12 // 10
# And the served instance's own institution and server, created with history.
ROWS = SEEDED + 2
# gunicorn's worker timeout, seconds: above the gthread worker's own beat
# (it polls for a second between heartbeats), so a loaded machine does not
# kill a threaded worker that is doing its job.
TIMEOUT = "2"
SEED = f"from bench.audit import seed; print(seed({APPROVALS}))"


def read_slowly(served: Served, seconds: float) -> tuple[bytes, float]:
    """GET the CSV export over HTTP/1.0 (the end of the body is the end of
    the connection) with a small receive window, taking about ``seconds``."""
    address = urlsplit(served.url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # A small window before connecting: the server's writes wait for ours.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect((address.hostname, address.port))
        sock.sendall(
            b"GET /api/v1/audit/?format=csv HTTP/1.0\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Api-Key {served.key}\r\n\r\n".encode()
        )
        started = time.monotonic()
        received = bytearray()
        while True:
            try:
                piece = sock.recv(4096)
            except ConnectionResetError:  # a killed worker may reset it
                break
            if not piece:
                break
            received += piece
            time.sleep(seconds * 4096 / (ROWS * 200))  # about 200 bytes a row
        return bytes(received), time.monotonic() - started


def csv_rows(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    return body.count(b"\r\n") - 1, body


@pytest.mark.parametrize("threaded", [True, False], ids=["gthread", "sync"])
def test_a_download_longer_than_the_worker_timeout(
    tmp_path: Path, threaded: bool
) -> None:
    threads = 4 if threaded else 1
    worker_class = "gthread" if threaded else "sync"
    with served(
        tmp_path,
        f"auditslow{worker_class}",
        postgres_url=suite_postgres_url(),
        workers=1,
        threads=threads,
        gunicorn_args=("--worker-class", worker_class, "--timeout", TIMEOUT),
    ) as instance:
        seeded = manage(base_env(**instance.database), "shell", "-c", SEED)
        assert int(seeded.split()[-1]) == SEEDED
        answer, seconds = read_slowly(instance, seconds=10)
    # The download took several worker timeouts (or was cut after a few).
    rows, body = csv_rows(answer)
    if threaded:
        assert seconds > 3 * int(TIMEOUT), seconds
        assert rows == ROWS, (rows, ROWS)
        assert body.endswith(b"\r\n")
    else:
        # What the README's threads avoid: the sync worker, busy writing,
        # misses its heartbeat and is killed; the file ends short.
        assert rows < ROWS, (rows, ROWS)
