"""The audit export (GET /api/v1/audit/ and the admin page): every change to
institutions, servers and approvals with who, when, before and after, and the
gate's daily use; oldest first, filtered, paged by a keyset cursor, CSV
streamed and formula-safe."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest.mock import patch

from django.contrib.auth import get_user_model
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext

from integrations import audit, auditexport, registry
from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage, Institution
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server
from tests.test_permissions import staffer

URL = "/api/v1/audit/"
ADMIN_URL = "/admin/audit/"
TOMORROW = date.today() + timedelta(days=1)


def all_history_at(moment: datetime) -> None:
    """Every historical record at one instant (rows sharing a timestamp)."""
    for model in (Institution, DicomWebServer, ApprovedUser):
        model.history.model.objects.update(history_date=moment)  # type: ignore[attr-defined]


def rows_of(answer: Any) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.content
    return answer.json()["results"]


class ExportTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.boss = User.objects.create_superuser("boss", "boss@pacsbin.example", "pw")
        cls.key, cls.raw = api_key("auditor", "manage")
        with audit.acting_as(user=cls.boss):
            cls.institution = make_institution("University Hospital")
            cls.server = make_server(cls.institution, "Main PACS", status="pending")
            cls.server.status = DicomWebServer.Status.ACTIVE
            cls.server.notes = "Go live"
            cls.server.save()
        with audit.acting_as(label="contact:it@university.edu"):
            registry.add_approved_users(cls.server, ["Jane.Doe@University.edu"])
        with audit.acting_as(user=cls.boss):
            registry.remove_approved_users(cls.server, ["jane.doe@university.edu"])
        cls.other = make_institution("Other Clinic")
        cls.other_server = make_server(cls.other, "Other PACS", emails=["x@other.org"])

    def get(self, **params: Any) -> Any:
        return self.client.get(URL, params, **key_header(self.raw))

    def all_rows(self, **params: Any) -> list[dict[str, Any]]:
        """Every row, following ``next`` to the end."""
        found: list[dict[str, Any]] = []
        answer = self.get(**params)
        while True:
            body = answer.json()
            assert answer.status_code == 200, body
            found += body["results"]
            if body["next"] is None:
                return found
            answer = self.client.get(body["next"], **key_header(self.raw))


class WhatEachRowSays(ExportTestCase):
    def test_a_created_institution_has_its_fields_after(self) -> None:
        rows = self.all_rows(institution=self.institution.pk)
        created = [r for r in rows if r["object_type"] == "institution"]
        assert len(created) == 1
        row = created[0]
        assert (row["action"], row["actor"], row["object_id"]) == (
            "created",
            "boss",
            self.institution.pk,
        )
        assert row["before"] is None
        assert row["after"]["name"] == "University Hospital"
        assert "updated_at" not in row["after"]
        assert (row["server"], row["email"]) == (None, "")

    def test_a_change_shows_only_the_changed_fields_before_and_after(self) -> None:
        rows = self.all_rows(server=self.server.pk)
        servers = [r for r in rows if r["object_type"] == "server"]
        assert [r["action"] for r in servers] == ["created", "changed"]
        changed = servers[1]
        assert changed["before"] == {"status": "pending", "notes": ""}
        assert changed["after"] == {"status": "active", "notes": "Go live"}
        assert changed["server"] == self.server.pk
        assert servers[0]["after"]["institution"] == self.institution.pk
        assert servers[0]["after"]["qido_url"] == "https://pacs.example.edu/dicomweb"

    def test_each_change_compares_with_the_objects_own_previous_record(self) -> None:
        # Another server changed in between must not be taken as "previous".
        with audit.acting_as(user=self.boss):
            self.other_server.notes = "other"
            self.other_server.save()
            self.server.notes = "Second note"
            self.server.save()
        changes = [
            r for r in self.all_rows(server=self.server.pk) if r["action"] == "changed"
        ]
        assert changes[-1]["before"] == {"notes": "Go live"}
        assert changes[-1]["after"] == {"notes": "Second note"}

    def test_an_approval_created_and_deleted_names_server_email_and_actor(
        self,
    ) -> None:
        rows = [
            r
            for r in self.all_rows(server=self.server.pk)
            if r["object_type"] == "approved_user"
        ]
        assert [(r["action"], r["actor"]) for r in rows] == [
            ("created", "contact:it@university.edu"),
            ("deleted", "boss"),
        ]
        assert {r["email"] for r in rows} == {"Jane.Doe@university.edu"}
        assert rows[0]["after"] == {
            "server": self.server.pk,
            "email": "Jane.Doe@university.edu",
            "expires_at": None,
        }
        assert rows[1]["before"] == rows[0]["after"]
        assert rows[1]["after"] is None

    def test_a_deleted_server_keeps_its_history_under_its_id(self) -> None:
        server_id = self.other_server.pk
        with audit.acting_as(user=self.boss):
            self.other_server.delete()
        rows = self.all_rows(server=server_id)
        kinds = [(r["object_type"], r["action"]) for r in rows]
        assert kinds[0] == ("server", "created")
        assert ("approved_user", "deleted") in kinds
        assert kinds[-1] == ("server", "deleted") or ("server", "deleted") in kinds
        deleted = [r for r in rows if r == rows[-1] or r["action"] == "deleted"]
        assert any(
            r["before"] and r["before"].get("name") == "Other PACS" for r in deleted
        )
        # The institution filter still finds it, though the server is gone.
        by_institution = self.all_rows(institution=self.other.pk)
        assert {
            r["object_id"] for r in by_institution if r["object_type"] == "server"
        } == {server_id}

    def test_a_change_through_an_api_key_names_the_key(self) -> None:
        response = self.client.patch(
            f"/api/v1/servers/{self.server.pk}/",
            {"notes": "via the API"},
            content_type="application/json",
            **key_header(self.raw),
        )
        assert response.status_code == 200, response.content
        last = self.all_rows(server=self.server.pk)[-1]
        assert (last["actor"], last["action"], last["after"]) == (
            "api-key:auditor",
            "changed",
            {"notes": "via the API"},
        )

    def test_the_gates_daily_use_is_a_used_row_at_the_days_midnight(self) -> None:
        EdgeUsage.objects.create(
            server=self.server,
            email="jane.doe@university.edu",
            day=date(2030, 1, 2),
            granted=14,
            refused=1,
            last_used_at=datetime(2030, 1, 2, 16, 22, 5, tzinfo=UTC),
        )
        last = self.all_rows(server=self.server.pk)[-1]
        assert last == {
            "at": "2030-01-02T00:00:00Z",
            "actor": "jane.doe@university.edu",
            "action": "used",
            "object_type": "edge_usage",
            "object_id": EdgeUsage.objects.get().pk,
            "server": self.server.pk,
            "email": "jane.doe@university.edu",
            "before": None,
            "after": {
                "day": "2030-01-02",
                "granted": 14,
                "refused": 1,
                "last_used_at": "2030-01-02T16:22:05Z",
            },
        }

    def test_rows_are_oldest_first_across_tables(self) -> None:
        EdgeUsage.objects.create(server=self.server, email="a@b.org", day=TOMORROW)
        rows = self.all_rows()
        stamps = [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in rows]
        assert stamps == sorted(stamps)
        assert rows[0]["object_type"] == "institution"
        assert rows[-1]["object_type"] == "edge_usage"
        assert len(rows) == 2 + 3 + 3 + 1  # institutions, servers, approvals, use


class Filters(ExportTestCase):
    def test_the_institution_filter_keeps_its_own_servers_and_approvals(self) -> None:
        rows = self.all_rows(institution=self.other.pk)
        assert {(r["object_type"], r["object_id"]) for r in rows} == {
            ("institution", self.other.pk),
            ("server", self.other_server.pk),
            ("approved_user", ApprovedUser.objects.get(server=self.other_server).pk),
        }

    def test_the_email_filter_matches_ignoring_case_and_only_approvals_and_use(
        self,
    ) -> None:
        EdgeUsage.objects.create(
            server=self.server, email="Jane.Doe@university.edu", day=TOMORROW
        )
        EdgeUsage.objects.create(server=self.server, email="x@other.org", day=TOMORROW)
        rows = self.all_rows(email="  JANE.DOE@University.EDU ")
        assert [(r["object_type"], r["action"]) for r in rows] == [
            ("approved_user", "created"),
            ("approved_user", "deleted"),
            ("edge_usage", "used"),
        ]

    def test_since_and_until_take_dates_and_date_times(self) -> None:
        all_history_at(datetime(2026, 3, 2, 8, 15, tzinfo=UTC))
        Institution.history.filter(id=self.other.pk).update(  # type: ignore[attr-defined]
            history_date=datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
        )
        assert len(self.all_rows(since="2026-03-02", until="2026-03-02")) == 7
        assert len(self.all_rows(since="2026-03-03")) == 1
        assert len(self.all_rows(until="2026-03-02T08:15:00Z")) == 0
        assert len(self.all_rows(since="2026-03-02T08:15:00Z", until="2026-03-03")) == 7
        # No offset: UTC; an offset is honoured.
        assert len(self.all_rows(since="2026-03-04T10:00:00")) == 1
        assert len(self.all_rows(since="2026-03-04T11:00:00+01:00")) == 1
        assert len(self.all_rows(since="2026-03-04T10:00:01+00:00")) == 0

    def test_usage_rows_follow_the_day_filters(self) -> None:
        EdgeUsage.objects.create(
            server=self.server, email="a@b.org", day=date(2026, 3, 2)
        )
        used = {"object_type": "edge_usage"}.items()

        def used_rows(**params: str) -> int:
            return sum(1 for r in self.all_rows(**params) if used <= r.items())

        assert used_rows(since="2026-03-02", until="2026-03-02") == 1
        assert used_rows(since="2026-03-02T00:00:01Z") == 0
        assert used_rows(until="2026-03-02T00:00:00Z") == 0
        assert used_rows(until="2026-03-02T00:00:01Z") == 1

    def test_an_id_that_matches_nothing_is_an_empty_list(self) -> None:
        assert rows_of(self.get(server=999999)) == []
        assert rows_of(self.get(institution=999999)) == []


class Paging(ExportTestCase):
    def test_following_next_gives_every_row_once_in_order(self) -> None:
        everything = [r.as_dict() for r in auditexport.rows(auditexport.Filters())]
        for size in (1, 2, 3, 50):
            with self.subTest(size=size):
                assert self.all_rows(page_size=size) == everything

    def test_also_when_every_row_shares_one_instant(self) -> None:
        moment = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
        all_history_at(moment)
        for day in (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 2)):
            EdgeUsage.objects.create(
                server=self.server, email=f"u{EdgeUsage.objects.count()}@x.org", day=day
            )
        everything = self.all_rows(page_size=500)
        assert len(everything) == 8 + 3
        keys = [json.dumps(r, sort_keys=True) for r in everything]
        assert len(set(keys)) == len(keys)
        changed = [r for r in everything if r["action"] == "changed"]
        assert changed[0]["before"] == {"status": "pending", "notes": ""}
        for size in (1, 2, 4):
            with self.subTest(size=size):
                assert self.all_rows(page_size=size) == everything

    def test_next_keeps_the_filters_and_is_a_full_url(self) -> None:
        body = self.get(server=self.server.pk, page_size=1).json()
        assert body["next"].startswith("http://testserver/api/v1/audit/?")
        assert f"server={self.server.pk}" in body["next"]
        assert "page_size=1" in body["next"]

    def test_a_page_costs_the_same_queries_whatever_its_size(self) -> None:
        for n in range(30):
            EdgeUsage.objects.create(
                server=self.server, email=f"u{n}@x.org", day=date.today()
            )
            with audit.acting_as(user=self.boss):
                self.server.notes = f"note {n}"
                self.server.save()
        self.get()  # the key, remembered
        counts = []
        for size in (2, 60):
            with CaptureQueriesContext(connection) as queries:
                assert len(rows_of(self.get(page_size=size))) == size
            counts.append(len(queries))
        assert counts[0] == counts[1], counts
        assert counts[0] <= 8, counts


class Csv(ExportTestCase):
    def csv_rows(self, **params: Any) -> tuple[Any, list[list[str]]]:
        response = self.get(format="csv", **params)
        assert response.status_code == 200
        text = b"".join(response.streaming_content).decode()
        return response, list(csv.reader(io.StringIO(text)))

    def test_it_is_streamed_as_an_attachment_with_the_json_columns(self) -> None:
        response, lines = self.csv_rows()
        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith(
            'attachment; filename="audit-'
        )
        assert lines[0] == list(auditexport.COLUMNS)
        as_json = self.all_rows()
        assert len(lines) == 1 + len(as_json)
        first = dict(zip(lines[0], lines[1], strict=True))
        assert first["at"] == as_json[0]["at"]
        assert json.loads(first["after"]) == as_json[0]["after"]
        assert first["before"] == "" and first["server"] == ""

    def test_cells_that_a_spreadsheet_would_run_get_an_apostrophe(self) -> None:
        with audit.acting_as(label='=HYPERLINK("http://evil")'):
            registry.add_approved_users(self.server, ["-sum@example.org"])
        _response, lines = self.csv_rows(server=self.server.pk)
        last = dict(zip(lines[0], lines[-1], strict=True))
        assert last["actor"] == '\'=HYPERLINK("http://evil")'
        assert last["email"] == "'-sum@example.org"
        for line in lines[1:]:
            assert not any(
                cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in line
            )

    def test_the_stream_comes_in_pieces_of_many_rows_not_one_per_row(self) -> None:
        """Each piece is a write to the client: one per row would be a system
        call per row through a real server."""
        registry.add_approved_users(
            self.server, [f"reader{n}@example.org" for n in range(40)]
        )
        with patch.object(auditexport, "STREAM_PIECE", 500):
            response = self.get(format="csv")
            pieces = [piece.decode() for piece in response.streaming_content]
        lines = list(csv.reader(io.StringIO("".join(pieces))))
        assert len(lines) == 1 + len(self.all_rows())
        assert 1 < len(pieces) < len(lines) / 2, (len(pieces), len(lines))
        # Every piece but the last ends a line: no row is split across two.
        assert all(piece.endswith("\r\n") for piece in pieces)
        assert all(len(piece) >= 500 for piece in pieces[:-1])

    def test_the_csv_takes_the_same_filters(self) -> None:
        _response, lines = self.csv_rows(institution=self.other.pk)
        assert len(lines) == 1 + 3


@override_settings(ACCESS_THROTTLE_RATE=None)
class WhoMayExport(ExportTestCase):
    def test_without_credentials_it_is_a_401(self) -> None:
        assert self.client.get(URL).status_code == 401

    def test_an_access_key_is_a_403(self) -> None:
        _key, raw = api_key("uploader", "access")
        response = self.client.get(URL, **key_header(raw))
        assert response.status_code == 403
        assert "scope 'access'" in response.json()["detail"]

    def test_a_staffer_needs_view_on_institutions_servers_and_approvals(self) -> None:
        partial = staffer("eve", "view_approveduser", "view_institution")
        self.client.force_login(partial)
        response = self.client.get(URL, HTTP_ACCEPT="application/json")
        assert response.status_code == 403
        assert "integrations.view_dicomwebserver" in response.json()["detail"]
        full = staffer(
            "ann", "view_approveduser", "view_institution", "view_dicomwebserver"
        )
        self.client.force_login(full)
        assert self.client.get(URL, HTTP_ACCEPT="application/json").status_code == 200

    def test_no_cors_headers_for_the_uploaders_origin(self) -> None:
        response = self.client.get(
            URL, HTTP_ORIGIN="https://pacsbin.com", **key_header(self.raw)
        )
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response
        preflight = self.client.options(
            URL,
            HTTP_ORIGIN="https://pacsbin.com",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        )
        assert "Access-Control-Allow-Origin" not in preflight


class BadInput(ExportTestCase):
    def assert_refused(self, name: str, shown: str, **params: Any) -> None:
        response = self.get(**params)
        assert response.status_code == 400, response.content
        messages = " ".join(response.json()[name])
        assert shown in messages, messages

    def test_each_bad_value_is_named(self) -> None:
        cases = [
            ("since", "yesterday", {"since": "yesterday"}),
            ("until", "2026-02-30", {"until": "2026-02-30"}),
            ("since", "2026-13-01T00:00:00Z", {"since": "2026-13-01T00:00:00Z"}),
            ("until", "2026-01-01", {"since": "2026-03-01", "until": "2026-01-01"}),
            ("format", "xml", {"format": "xml"}),
            ("server", "abc", {"server": "abc"}),
            ("server", "²", {"server": "²"}),
            ("institution", "99999999999999999999", {"institution": "9" * 20}),
            ("institution", "-1", {"institution": "-1"}),
            ("email", "jane@", {"email": "jane@"}),
            ("cursor", "garbage", {"cursor": "garbage"}),
            ("page_size", "0", {"page_size": "0"}),
        ]
        for name, shown, params in cases:
            with self.subTest(params=params):
                self.assert_refused(name, shown, **params)

    def test_every_bad_filter_is_reported_at_once(self) -> None:
        response = self.get(server="x", since="y", format="z")
        assert response.status_code == 400
        assert set(response.json()) == {"server", "since", "format"}

    def test_odd_input_is_never_a_500(self) -> None:
        odd = ["\x00", "\u202e", "9" * 400, "١", "0001-01-01", "9999-12-31", "[[[["]
        for value in odd:
            for name in ("since", "until", "server", "institution", "email", "cursor"):
                with self.subTest(name=name, value=value):
                    response = self.get(**{name: value})
                    assert response.status_code in (200, 400), response.content
        bad_cursors = [
            auditexport.Position(datetime(2026, 1, 1, tzinfo=UTC), 9, 1).token(),
            "WyIyMDI2IiwgMCwgLTFd",  # ["2026", 0, -1]
            "bnVsbA",  # null
        ]
        for cursor in bad_cursors:
            with self.subTest(cursor=cursor):
                assert self.get(cursor=cursor).status_code == 400

    def test_the_widest_range_is_no_error(self) -> None:
        answer = self.get(since="0001-01-01", until="9999-12-31")
        assert len(rows_of(answer)) == 8


class AdminPage(ExportTestCase):
    def test_the_index_links_to_it_for_those_allowed(self) -> None:
        self.client.force_login(self.boss)
        self.assertContains(self.client.get("/admin/"), f'href="{ADMIN_URL}"')
        clerk = staffer("clerk", "view_approveduser")
        self.client.force_login(clerk)
        self.assertNotContains(self.client.get("/admin/"), f'href="{ADMIN_URL}"')
        assert self.client.get(ADMIN_URL).status_code == 403

    def test_it_shows_the_filters_a_preview_and_the_downloads(self) -> None:
        self.client.force_login(self.boss)
        response = self.client.get(ADMIN_URL, {"server": self.server.pk})
        html = response.content.decode()
        for label in ("Institution", "Server", "Email", "From", "Until"):
            assert f">{label}</label>" in html, label
        assert "Go live" in html
        assert f'href="/api/v1/audit/?server={self.server.pk}&amp;format=csv"' in html
        assert f'href="/api/v1/audit/?server={self.server.pk}&amp;format=json"' in html
        assert "Other PACS" not in html

    def test_a_bad_filter_is_shown_on_the_page(self) -> None:
        self.client.force_login(self.boss)
        response = self.client.get(ADMIN_URL, {"since": "last week"})
        assert response.status_code == 200
        self.assertContains(response, "“last week” is not an ISO 8601 date")

    def test_the_preview_follows_the_date_range(self) -> None:
        self.client.force_login(self.boss)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        response = self.client.get(ADMIN_URL, {"since": tomorrow})
        self.assertContains(response, "Nothing matches these filters.")
