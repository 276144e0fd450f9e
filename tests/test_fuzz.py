"""schemathesis over every operation of the served API (tests/fuzz.py): a real
gunicorn on a database of its own, of the suite's engine, 100 examples per
operation (``make fuzz``: 1,000, on PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.fuzz import fuzz, read_report
from tests.served import suite_postgres_url

pytestmark = pytest.mark.fuzz


def documented_operations() -> set[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method in operations
    }


class TestFuzzingTheServedApi:
    def test_every_operation_answers_without_server_error_within_its_schema(
        self, tmp_path: Path
    ) -> None:
        summary = fuzz(tmp_path, max_examples=100, postgres_url=suite_postgres_url())
        report = "\n".join([*summary.lines(), summary.output[-5000:]])
        assert summary.server_errors == [], report
        assert summary.failures == [], report
        assert summary.returncode == 0, report
        assert set(summary.per_operation) == documented_operations(), report
        # Operations whose inputs are few (no parameter, one id) run out of
        # distinct examples before 100; the others reach it.
        assert summary.examples >= 100 * len(summary.per_operation), report


class TestTheSummaryReadsSchemathesisEvents:
    def test_failures_and_server_errors_are_counted_per_operation(
        self, tmp_path: Path
    ) -> None:
        def check(name: str, status: str, message: str = "") -> dict:
            info = {"failure": {"message": message}} if message else None
            return {"name": name, "status": status, "failure_info": info}

        event = {
            "ScenarioFinished": {
                "phase": "fuzzing",
                "status": "failure",
                "recorder": {
                    "label": "GET /api/v1/servers/",
                    "cases": {"a": {}, "b": {}},
                    "checks": {
                        "a": [check("not_a_server_error", "failure", "Server error")],
                        "b": [check("not_a_server_error", "success")],
                    },
                },
            }
        }
        path = tmp_path / "events.ndjson"
        path.write_text(json.dumps(event) + "\n")
        per_operation, failures, server_errors = read_report(path)
        assert per_operation == {"GET /api/v1/servers/": 2}
        expected = ["GET /api/v1/servers/: not_a_server_error: Server error"]
        assert failures == expected
        assert server_errors == expected
