"""schemathesis against a served instance: gunicorn on a database of its own,
every operation of /api/schema/ with a manage API key.

``make fuzz`` runs 1,000 examples per operation on PostgreSQL and prints a
summary; tests/test_fuzz.py runs the same with 100 in ``make test``.

    python -m tests.fuzz --max-examples 1000 [--postgres-url URL | --sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.served import served

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# What every answer must satisfy (as in tests/test_api_schema.py, in process).
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


@dataclass
class Summary:
    engine: str
    operations: int
    examples: int
    seconds: float
    returncode: int
    per_operation: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    output: str = ""

    def lines(self) -> list[str]:
        return [
            f"fuzz ({self.engine}): {self.operations} operations, "
            f"{self.examples} examples, {len(self.server_errors)} server errors, "
            f"{len(self.failures)} failures in all, {self.seconds:.0f} s",
            *[f"  {count:6d}  {label}" for label, count in self.per_operation.items()],
            *[f"  server error: {text}" for text in self.server_errors],
            *[f"  failure: {text}" for text in self.failures],
        ]


def read_report(path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Examples per operation, failures and server errors of schemathesis'
    ndjson event stream."""
    operations: dict[str, int] = {}
    failures: list[str] = []
    server_errors: list[str] = []
    for line in path.read_text().splitlines():
        event: dict[str, Any] = json.loads(line)
        for name, body in event.items():
            if name != "ScenarioFinished":
                continue
            recorder = body.get("recorder", {})
            label = recorder.get("label", "")
            cases = len(recorder.get("cases", {}))
            operations[label] = operations.get(label, 0) + cases
            for checks in recorder.get("checks", {}).values():
                for check in checks:
                    if str(check.get("status")).lower() != "failure":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure", {})
                    message = str(failure.get("message", "")).replace("\n", "; ")
                    text = f"{label}: {check.get('name')}: {message}"
                    failures.append(text)
                    if check.get("name") == "not_a_server_error":
                        server_errors.append(text)
    return operations, sorted(set(failures)), sorted(set(server_errors))


# Servers behind Pacsbin's proxy, in both modes, beside the plain one the
# served instance holds: the fuzzed operations (proxy-config/pacsbin, PATCH,
# checks) then meet proxy settings too, not only null.
PROXIED_SERVERS = [
    {
        "name": "County PACS (DIMSE)",
        "qido_url": "https://pacs-proxy.county.example",
        "wado_url": "https://pacs-proxy.county.example",
        "cors_mode": "dimse_proxy",
        "pacsbin_proxy": {
            "mode": "dimse",
            "archive_ae_title": "PACS_SERVER",
            "archive_host": "10.1.2.3",
            "archive_port": 11112,
            "proxy_ae_title": "PACSBIN_PROXY",
            "proxy_dimse_port": 8888,
        },
    },
    {
        "name": "County VNA (forwarded)",
        "qido_url": "https://vna-proxy.county.example",
        "wado_url": "https://vna-proxy.county.example",
        "cors_mode": "dimse_proxy",
        "pacsbin_proxy": {
            "mode": "dicomweb",
            "forward_qido_url": "http://10.1.2.4:8042",
            "forward_wado_url": "http://10.1.2.4:8042",
        },
    },
]


def add_proxied_servers(url: str, key: str) -> None:
    """Create PROXIED_SERVERS through the API, in the served instance's
    institution (id 1)."""
    import urllib.request

    for server in PROXIED_SERVERS:
        request = urllib.request.Request(
            f"{url}/api/v1/servers/",
            data=json.dumps({"institution": 1, **server}).encode(),
            headers={
                "Authorization": f"Api-Key {key}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201, answer.read()


def fuzz(
    tmp: Path, max_examples: int, postgres_url: str | None, seed: int = 1
) -> Summary:
    """Serve, fuzz every operation with ``max_examples`` each, summarise."""
    started = time.monotonic()
    with served(
        tmp,
        "fuzz",
        postgres_url=postgres_url,
        # Without a limit on the request line, long fuzzed query strings reach
        # the app instead of gunicorn's own 414, which no schema documents.
        gunicorn_args=("--limit-request-line", "0"),
        ACCESS_THROTTLE_RATE="off",
    ) as instance:
        add_proxied_servers(instance.url, instance.key)
        report = tmp / "fuzz-events.ndjson"
        command = [
            *[str(Path(sys.executable).with_name("schemathesis")), "run"],
            f"{instance.url}/api/schema/",
            *["--header", f"Authorization: Api-Key {instance.key}"],
            *["--checks", ",".join(CHECKS)],
            *["--max-examples", str(max_examples)],
            *["--phases", "examples,coverage,fuzzing"],
            *["--seed", str(seed), "--workers", "1"],
            *["--request-timeout", "30", "--suppress-health-check", "all"],
            *["--report", "ndjson", "--report-ndjson-path", str(report)],
            "--continue-on-failure",
            "--no-color",
        ]
        done = subprocess.run(
            command,
            cwd=tmp,  # its cache (.schemathesis/) stays out of the work tree
            capture_output=True,
            text=True,
            timeout=3600,
        )
        per_operation, failures, server_errors = read_report(report)
    return Summary(
        engine=instance.engine,
        operations=len(per_operation),
        examples=sum(per_operation.values()),
        per_operation=per_operation,
        seconds=time.monotonic() - started,
        returncode=done.returncode,
        failures=failures,
        server_errors=server_errors,
        output=done.stdout[-20000:] + done.stderr[-5000:],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--postgres-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES_URL,
        help="PostgreSQL server for the temporary database "
        "(default: DATABASE_URL, else the local server)",
    )
    where.add_argument("--sqlite", action="store_true", help="a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacsbin-fuzz-") as tmp:
        summary = fuzz(
            Path(tmp),
            args.max_examples,
            None if args.sqlite else args.postgres_url,
            seed=args.seed,
        )
    print(summary.output)
    print("\n".join(summary.lines()))
    return 1 if summary.failures or summary.returncode else 0


if __name__ == "__main__":
    raise SystemExit(main())
