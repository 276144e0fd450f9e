"""Uniqueness rules hold in the database, and every entry point answers a
duplicate with a message naming the value, never a 500."""

from __future__ import annotations

from unittest import mock

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.test import TestCase

from integrations.models import ApprovedUser, DicomWebServer, Institution
from tests.factories import approve, make_institution, make_server


class DatabaseConstraintTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.institution = make_institution("University Hospital")
        cls.server = make_server(cls.institution, "Main PACS")

    def test_the_database_refuses_an_institution_name_differing_only_in_case(
        self,
    ) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            Institution.objects.create(name="UNIVERSITY hospital")
        assert Institution.objects.count() == 1

    def test_the_database_refuses_a_server_name_twice_in_one_institution(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            make_server(self.institution, "main pacs")

    def test_the_same_server_name_is_fine_in_another_institution(self) -> None:
        other = make_institution("County General")
        make_server(other, "Main PACS")
        assert DicomWebServer.objects.filter(name="Main PACS").count() == 2

    def test_the_database_refuses_an_email_twice_for_one_server_ignoring_case(
        self,
    ) -> None:
        approve(self.server, "Jane.Doe@university.edu")
        with self.assertRaises(IntegrityError), transaction.atomic():
            approve(self.server, "jane.doe@UNIVERSITY.edu")
        assert ApprovedUser.objects.count() == 1

    def test_the_same_email_may_be_approved_for_several_servers(self) -> None:
        second = make_server(self.institution, "Research")
        approve(self.server, "jane@university.edu")
        approve(second, "jane@university.edu")
        assert ApprovedUser.objects.filter(email_key="jane@university.edu").count() == 2

    def test_the_database_refuses_an_approval_without_a_matching_key(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            ApprovedUser.objects.create(server=self.server, email="x@example.org")


class AdminDuplicateTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        cls.institution = make_institution("University Hospital")
        cls.server = make_server(cls.institution, "Main PACS")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_adding_an_institution_differing_only_in_case_names_the_value(self) -> None:
        response = self.client.post(
            "/admin/integrations/institution/add/",
            {
                "name": "university HOSPITAL",
                "servers-TOTAL_FORMS": "0",
                "servers-INITIAL_FORMS": "0",
            },
        )
        assert response.status_code == 200
        self.assertContains(
            response, "An institution named “university HOSPITAL” already exists"
        )
        assert Institution.objects.count() == 1

    def test_adding_a_duplicate_server_name_names_the_value(self) -> None:
        response = self.client.post(
            "/admin/integrations/dicomwebserver/add/",
            {
                "institution": self.institution.pk,
                "name": "MAIN pacs",
                "qido_url": "https://other.example.edu/dicomweb",
                "wado_url": "https://other.example.edu/dicomweb",
                "status": "pending",
                "cors_mode": "direct",
            },
        )
        assert response.status_code == 200
        self.assertContains(response, "already has a server named “MAIN pacs”")
        assert DicomWebServer.objects.count() == 1

    def test_adding_an_already_approved_email_names_the_value(self) -> None:
        approve(self.server, "jane@university.edu")
        response = self.client.post(
            "/admin/integrations/approveduser/add/",
            {"server": self.server.pk, "email": "JANE@university.edu"},
        )
        assert response.status_code == 200
        self.assertContains(
            response, "“JANE@university.edu” is already approved for this server"
        )
        assert ApprovedUser.objects.count() == 1

    def test_a_bad_url_in_the_admin_names_the_value_and_writes_nothing(self) -> None:
        response = self.client.post(
            "/admin/integrations/dicomwebserver/add/",
            {
                "institution": self.institution.pk,
                "name": "New",
                "qido_url": "https://user:pw@pacs.example.edu/dicomweb",
                "wado_url": "ftp://pacs.example.edu",
                "status": "pending",
                "cors_mode": "direct",
            },
        )
        assert response.status_code == 200
        self.assertContains(
            response,
            "“https://user:pw@pacs.example.edu/dicomweb” is not a usable DICOMweb URL",
        )
        self.assertContains(
            response, "“ftp://pacs.example.edu” is not a usable DICOMweb URL"
        )
        assert DicomWebServer.objects.count() == 1

    def test_urls_are_stored_without_the_trailing_slash(self) -> None:
        response = self.client.post(
            "/admin/integrations/dicomwebserver/add/",
            {
                "institution": self.institution.pk,
                "name": "New",
                "qido_url": "https://pacs.example.edu/dicomweb/",
                "wado_url": "HTTPS://PACS.example.edu/wado/",
                "status": "pending",
                "cors_mode": "direct",
            },
        )
        assert response.status_code == 302
        server = DicomWebServer.objects.get(name="New")
        assert server.qido_url == "https://pacs.example.edu/dicomweb"
        assert server.wado_url == "https://pacs.example.edu/wado"


class DatabaseRaceTests(TestCase):
    """The form's own check passed (another writer was faster): the database
    refuses the duplicate and the staffer gets the message, not a 500."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        make_institution("University Hospital")

    def test_a_duplicate_reaching_the_database_is_answered_naming_the_value(
        self,
    ) -> None:
        self.client.force_login(self.staff)
        with mock.patch.object(Institution, "validate_constraints"):
            response = self.client.post(
                "/admin/integrations/institution/add/",
                {
                    "name": "UNIVERSITY hospital",
                    "servers-TOTAL_FORMS": "0",
                    "servers-INITIAL_FORMS": "0",
                },
                follow=True,
            )
        assert response.status_code == 200
        self.assertContains(
            response, "An institution named “UNIVERSITY hospital” already exists"
        )
        assert Institution.objects.count() == 1
