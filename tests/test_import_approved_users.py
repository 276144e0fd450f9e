from __future__ import annotations

import io
import tempfile
from pathlib import Path
from unittest import mock

from django.core.management import CommandError, call_command
from django.test import TestCase

from integrations.models import ApprovedUser, DicomWebServer, Institution


def run(*args: str, stdin: str | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with mock.patch("sys.stdin", io.StringIO(stdin or "")):
        call_command("import_approved_users", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class ImportApprovedUsersTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.server = DicomWebServer.objects.create(
            institution=institution,
            name="PACS",
            qido_url="https://pacs.example/dicomweb",
            wado_url="https://pacs.example/dicomweb",
        )
        ApprovedUser.objects.build(cls.server, "already@example.org").save()

    def write(self, text: str) -> str:
        folder = Path(tempfile.mkdtemp())
        path = folder / "emails.txt"
        path.write_text(text, encoding="utf-8")
        self.addCleanup(path.unlink)
        return str(path)

    def emails(self) -> list[str]:
        return sorted(self.server.approved_users.values_list("email", flat=True))

    def test_it_adds_one_address_per_line_normalised_and_reports_existing(self) -> None:
        path = self.write(
            "  Jane.Doe@Example.ORG \n\nALREADY@example.org\njane.doe@example.org\n"
        )
        out, err = run(str(self.server.pk), path)
        self.assertEqual(self.emails(), ["Jane.Doe@example.org", "already@example.org"])
        self.assertIn("1 added, 1 already approved, 1 duplicate line(s) folded", out)
        self.assertIn("Writing: 2/2", err)

    def test_it_reads_the_email_column_of_a_csv(self) -> None:
        path = self.write(
            'name,Email\n"Doe, Jane",jane@example.org\nBob,bob@example.org\n'
        )
        run(str(self.server.pk), path)
        self.assertEqual(
            self.emails(),
            ["already@example.org", "bob@example.org", "jane@example.org"],
        )

    def test_it_reads_standard_input(self) -> None:
        run(str(self.server.pk), "-", stdin="stdin@example.org\n")
        self.assertIn("stdin@example.org", self.emails())

    def test_it_reports_every_bad_line_by_number_and_writes_nothing(self) -> None:
        path = self.write(
            "email\ngood@example.org\nnot-an-email\ngood2@example.org\nx@\n"
        )
        with self.assertRaises(CommandError) as caught:
            run(str(self.server.pk), path)
        message = str(caught.exception)
        self.assertIn("2 bad line(s), nothing was written", message)
        self.assertIn("Line 3: “not-an-email” is not a valid email address", message)
        self.assertIn("Line 5: “x@” is not a valid email address", message)
        self.assertEqual(self.emails(), ["already@example.org"])

    def test_it_keeps_the_audit_history_with_the_command_as_actor(self) -> None:
        path = self.write("audited@example.org\n")
        run(str(self.server.pk), path)
        record = ApprovedUser.history.get(email="audited@example.org")
        self.assertEqual(record.history_type, "+")
        self.assertTrue(
            record.history_actor.startswith("command:import_approved_users")
        )

    def test_it_names_a_missing_server_or_file(self) -> None:
        with self.assertRaisesMessage(CommandError, "No server with id 999999."):
            run("999999", self.write("a@example.org\n"))
        with self.assertRaisesMessage(CommandError, "/nonexistent/emails.csv"):
            run(str(self.server.pk), "/nonexistent/emails.csv")

    def test_a_failure_while_writing_leaves_nothing_written(self) -> None:
        lines = "".join(f"user{i}@example.org\n" for i in range(25))
        real = __import__("integrations.registry", fromlist=["x"]).add_normalised_users
        calls = []

        def fail_on_second_chunk(server, emails):
            calls.append(len(emails))
            if len(calls) == 2:
                raise RuntimeError("disk full")
            return real(server, emails)

        with (
            mock.patch(
                "integrations.management.commands.import_approved_users.WRITE_CHUNK", 10
            ),
            mock.patch(
                "integrations.registry.add_normalised_users", fail_on_second_chunk
            ),
            self.assertRaises(RuntimeError),
        ):
            run(str(self.server.pk), self.write(lines))
        self.assertEqual(calls, [10, 10])
        self.assertEqual(self.emails(), ["already@example.org"])
