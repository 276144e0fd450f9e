"""Uniqueness rules hold in the database, and every entry point answers a
duplicate with a message naming the value, never a 500."""

from __future__ import annotations

from typing import Any
from unittest import mock

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import CheckConstraint, Model, Q
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


class ValidateConstraintsContractTests(TestCase):
    """The models' ``validate_constraints`` keep Django's contract: every
    constraint is checked (not only the one with a message of its own), and a
    field in ``exclude`` is not, while duplicates are still named."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.institution = make_institution("University Hospital")
        cls.server = make_server(cls.institution, "Main PACS")
        approve(cls.server, "jane@university.edu")

    def with_extra_constraint(
        self, model: type[Model], field: str, value: str = "Forbidden"
    ) -> Any:
        """``model`` with one more constraint: ``field`` must not be ``value``."""
        extra = CheckConstraint(
            condition=~Q(**{field: value}),
            name="test_nothing_forbidden",
            violation_error_message="Nothing may be called “Forbidden”.",
        )
        return mock.patch.object(
            model._meta, "constraints", [*model._meta.constraints, extra]
        )

    def assert_refused(self, instance: Model, message: str, **kwargs: Any) -> None:
        with self.assertRaises(ValidationError) as caught:
            instance.full_clean(**kwargs)
        assert message in " ".join(caught.exception.messages), caught.exception

    def test_full_clean_checks_every_constraint_of_an_institution(self) -> None:
        with self.with_extra_constraint(Institution, "name"):
            self.assert_refused(
                Institution(name="Forbidden"), "Nothing may be called “Forbidden”."
            )

    def test_full_clean_checks_every_constraint_of_a_server(self) -> None:
        server = DicomWebServer(
            institution=self.institution,
            name="Forbidden",
            qido_url="https://pacs.example.edu/dicomweb",
            wado_url="https://pacs.example.edu/dicomweb",
        )
        with self.with_extra_constraint(DicomWebServer, "name"):
            self.assert_refused(server, "Nothing may be called “Forbidden”.")

    def test_full_clean_checks_every_constraint_of_an_approval(self) -> None:
        approval = ApprovedUser(server=self.server, email="Forbidden@Example.org")
        with self.with_extra_constraint(
            ApprovedUser, "email_key", "forbidden@example.org"
        ):
            self.assert_refused(approval, "Nothing may be called “Forbidden”.")

    def test_an_approval_without_its_key_is_refused_by_its_check_constraint(
        self,
    ) -> None:
        approval = ApprovedUser(server=self.server, email="x@example.org")
        with self.assertRaises(ValidationError) as caught:
            approval.validate_constraints()
        assert "approved_user_email_key_set" in str(caught.exception)

    def test_duplicates_are_still_named_under_their_field(self) -> None:
        with self.assertRaises(ValidationError) as caught:
            Institution(name="UNIVERSITY hospital").full_clean()
        assert caught.exception.message_dict["name"] == [
            "An institution named “UNIVERSITY hospital” already exists (names "
            "are compared ignoring case)."
        ]
        server = DicomWebServer(
            institution=self.institution,
            name="main PACS",
            qido_url="https://pacs.example.edu/dicomweb",
            wado_url="https://pacs.example.edu/dicomweb",
        )
        with self.assertRaises(ValidationError) as caught:
            server.full_clean()
        assert caught.exception.message_dict["name"] == [
            "This institution already has a server named “main PACS” (names are "
            "compared ignoring case)."
        ]
        with self.assertRaises(ValidationError) as caught:
            ApprovedUser(server=self.server, email="JANE@university.edu").full_clean()
        assert caught.exception.message_dict["email"] == [
            "“JANE@university.edu” is already approved for this server."
        ]

    def test_an_excluded_field_is_not_checked(self) -> None:
        Institution(name="university HOSPITAL").validate_constraints(exclude={"name"})
        Institution(name="university HOSPITAL").full_clean(exclude=["name"])
        server = DicomWebServer(institution=self.institution, name="MAIN pacs")
        server.validate_constraints(exclude={"name"})
        server.validate_constraints(exclude={"institution"})
        approval = ApprovedUser.objects.build(self.server, "JANE@university.edu")
        approval.validate_constraints(exclude={"email", "email_key"})
        approval.validate_constraints(exclude={"server"})
        with self.assertRaises(ValidationError):
            server.validate_constraints(exclude={"notes"})

    def test_the_key_is_checked_whenever_the_email_is(self) -> None:
        # A ModelForm excludes every field it does not show, the key among them.
        approval = ApprovedUser(server=self.server, email="JANE@university.edu")
        with self.assertRaises(ValidationError) as caught:
            approval.full_clean(exclude=["email_key", "created_at"])
        assert "is already approved" in caught.exception.messages[0]

    def test_a_bad_email_is_reported_under_its_field_and_nothing_else(self) -> None:
        with self.assertRaises(ValidationError) as caught:
            ApprovedUser(server=self.server, email="not an email").full_clean()
        assert list(caught.exception.message_dict) == ["email"]


class AdminInlineDuplicateTests(TestCase):
    def test_adding_a_duplicate_server_inline_names_the_value(self) -> None:
        staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        institution = make_institution("University Hospital")
        server = make_server(institution, "Main PACS")
        self.client.force_login(staff)
        response = self.client.post(
            f"/admin/integrations/institution/{institution.pk}/change/",
            {
                "name": "University Hospital",
                "servers-TOTAL_FORMS": "2",
                "servers-INITIAL_FORMS": "1",
                "servers-0-id": server.pk,
                "servers-0-institution": institution.pk,
                "servers-0-name": "Main PACS",
                "servers-0-status": "active",
                "servers-0-cors_mode": "direct",
                "servers-0-qido_url": server.qido_url,
                "servers-0-wado_url": server.wado_url,
                "servers-1-institution": institution.pk,
                "servers-1-name": "MAIN pacs",
                "servers-1-status": "pending",
                "servers-1-cors_mode": "direct",
                "servers-1-qido_url": "https://other.example.edu/dicomweb",
                "servers-1-wado_url": "https://other.example.edu/dicomweb",
            },
            follow=True,
        )
        assert response.status_code == 200
        self.assertContains(response, "already has a server named “MAIN pacs”")
        assert DicomWebServer.objects.count() == 1

    def test_a_new_institution_with_its_first_server_inline_is_saved(self) -> None:
        staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        make_server(make_institution("County General"), "Main PACS")
        self.client.force_login(staff)
        response = self.client.post(
            "/admin/integrations/institution/add/",
            {
                "name": "University Hospital",
                "servers-TOTAL_FORMS": "1",
                "servers-INITIAL_FORMS": "0",
                "servers-0-name": "Main PACS",
                "servers-0-status": "pending",
                "servers-0-cors_mode": "direct",
                "servers-0-qido_url": "https://other.example.edu/dicomweb",
                "servers-0-wado_url": "https://other.example.edu/dicomweb",
            },
        )
        assert response.status_code == 302
        assert DicomWebServer.objects.filter(
            institution__name="University Hospital", name="Main PACS"
        ).exists()
