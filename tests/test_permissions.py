"""Who may do what in the admin and with a staff session: approving a request
needs every model permission the same change made by hand would; rejecting
needs the change permission on requests; the access lookup and a staff session
on the access API need to view approved users; recording a browser check needs
to change servers. For each needed permission, a staffer lacking only it is
refused and nothing is written; one holding them all succeeds."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import TestCase
from django.urls import reverse

from integrations.models import (
    ApprovedUser,
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import ReviewError, approve_request
from tests.factories import (
    approve,
    make_institution,
    make_server,
    submitted_request,
    update_request_for,
)


def staffer(username: str, *codenames: str) -> Any:
    user = get_user_model().objects.create_user(
        username, f"{username}@pacsbin.example", is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="integrations", codename__in=codenames
        )
    )
    assert user.user_permissions.count() == len(codenames), codenames
    return user


def registry_state() -> tuple:
    return (
        sorted(Institution.objects.values_list("name", "contact_name", "updated_at")),
        sorted(
            DicomWebServer.objects.values_list(
                "name", "qido_url", "status", "updated_at"
            )
        ),
        sorted(ApprovedUser.objects.values_list("server_id", "email")),
        sorted(OnboardingRequest.objects.values_list("reference", "status")),
        Institution.history.count(),
        DicomWebServer.history.count(),
        ApprovedUser.history.count(),
    )


def review_url(r: OnboardingRequest) -> str:
    return reverse("admin:integrations_onboardingrequest_change", args=[r.pk])


def approve_url(r: OnboardingRequest) -> str:
    return reverse("admin:integrations_onboardingrequest_approve", args=[r.pk])


def reject_url(r: OnboardingRequest) -> str:
    return reverse("admin:integrations_onboardingrequest_reject", args=[r.pk])


class ApprovalPermissionCase(TestCase):
    # What the request under test needs; each test class sets it.
    needed: list[str] = []

    def request_under_test(self) -> OnboardingRequest:
        raise NotImplementedError

    def assert_refused_without_each_needed_permission(self) -> None:
        r = self.request_under_test()
        for missing in self.needed:
            with self.subTest(missing=missing):
                kept = [c for c in self.needed if c != missing]
                user = staffer(f"no-{missing}", "view_onboardingrequest", *kept)
                self.client.force_login(user)
                page = self.client.get(review_url(r))
                self.assertEqual(page.status_code, 200)
                self.assertNotContains(page, 'id="approve-button"')
                before = registry_state()
                response = self.client.post(approve_url(r), {"activate": "on"})
                self.assertEqual(response.status_code, 403)
                self.assertEqual(registry_state(), before)
                r.refresh_from_db()
                self.assertEqual(r.status, "submitted")

    def assert_approved_with_all_of_them(self) -> OnboardingRequest:
        r = self.request_under_test()
        user = staffer("everything", "view_onboardingrequest", *self.needed)
        self.client.force_login(user)
        page = self.client.get(review_url(r))
        self.assertContains(page, 'id="approve-button"')
        self.assertNotContains(page, 'id="cannot-approve"')
        response = self.client.post(approve_url(r), {"activate": "on"})
        self.assertEqual(response.status_code, 302)
        r.refresh_from_db()
        self.assertEqual(r.status, "approved")
        self.assertEqual(r.reviewer, user)
        return r


class ApprovingANewRequestForANewInstitution(ApprovalPermissionCase):
    needed = [
        "change_onboardingrequest",
        "add_institution",
        "add_dicomwebserver",
        "add_approveduser",
    ]

    def request_under_test(self) -> OnboardingRequest:
        return self.r

    def setUp(self) -> None:
        self.r = submitted_request()

    def test_a_staffer_lacking_any_one_needed_permission_is_refused(self) -> None:
        self.assert_refused_without_each_needed_permission()
        self.assertFalse(DicomWebServer.objects.exists())

    def test_a_staffer_with_all_of_them_approves(self) -> None:
        self.assert_approved_with_all_of_them()
        server = DicomWebServer.objects.get()
        self.assertEqual(server.status, "active")
        self.assertEqual(server.approved_users.count(), 2)

    def test_the_review_page_says_which_permission_is_missing(self) -> None:
        self.client.force_login(
            staffer("reviewer", "view_onboardingrequest", "change_onboardingrequest")
        )
        page = self.client.get(review_url(self.r))
        self.assertContains(page, 'id="cannot-approve"')
        self.assertContains(page, "add institutions, add DICOMweb servers")
        self.assertContains(page, 'id="reject-button"')  # rejecting is allowed

    def test_a_view_only_staffer_sees_neither_button(self) -> None:
        self.client.force_login(staffer("viewer", "view_onboardingrequest"))
        page = self.client.get(review_url(self.r))
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, 'id="approve-button"')
        self.assertNotContains(page, 'id="reject-button"')


class ApprovingANewRequestForAnExistingInstitution(ApprovalPermissionCase):
    needed = [
        "change_onboardingrequest",
        "change_institution",
        "add_dicomwebserver",
        "add_approveduser",
    ]

    def request_under_test(self) -> OnboardingRequest:
        return self.r

    def setUp(self) -> None:
        make_institution("St. Example Hospital")
        self.r = submitted_request()

    def test_a_staffer_lacking_any_one_needed_permission_is_refused(self) -> None:
        self.assert_refused_without_each_needed_permission()

    def test_adding_institutions_is_not_enough_to_add_to_an_existing_one(self) -> None:
        user = staffer(
            "adder",
            "view_onboardingrequest",
            "change_onboardingrequest",
            "add_institution",
            "add_dicomwebserver",
            "add_approveduser",
        )
        self.client.force_login(user)
        response = self.client.post(approve_url(self.r))
        self.assertEqual(response.status_code, 403)
        self.assertFalse(DicomWebServer.objects.exists())

    def test_a_staffer_with_all_of_them_approves(self) -> None:
        self.assert_approved_with_all_of_them()
        self.assertEqual(Institution.objects.count(), 1)
        self.assertEqual(DicomWebServer.objects.count(), 1)


class ApprovingAnUpdate(ApprovalPermissionCase):
    needed = [
        "change_onboardingrequest",
        "change_institution",
        "change_dicomwebserver",
        "add_approveduser",
        "delete_approveduser",
    ]

    def request_under_test(self) -> OnboardingRequest:
        return self.r

    def setUp(self) -> None:
        self.server = make_server(make_institution(contact_name="Old Contact"))
        approve(self.server, "old@example.edu")
        self.r = update_request_for(
            self.server,
            contact_name="New Contact",
            qido_url="https://new.example.edu/dicomweb",
            emails_to_add=["new@example.edu"],
            emails_to_remove=["old@example.edu"],
        )

    def test_a_staffer_lacking_any_one_needed_permission_is_refused(self) -> None:
        self.assert_refused_without_each_needed_permission()
        self.server.refresh_from_db()
        self.assertEqual(self.server.qido_url, "https://pacs.example.edu/dicomweb")

    def test_a_staffer_with_all_of_them_approves(self) -> None:
        self.assert_approved_with_all_of_them()
        self.server.refresh_from_db()
        self.assertEqual(self.server.qido_url, "https://new.example.edu/dicomweb")
        self.assertEqual(self.server.institution.contact_name, "New Contact")
        self.assertEqual(
            list(self.server.approved_users.values_list("email", flat=True)),
            ["new@example.edu"],
        )


class ApprovingAnUpdateThatOnlyAddsEmails(ApprovalPermissionCase):
    needed = ["change_onboardingrequest", "add_approveduser"]

    def request_under_test(self) -> OnboardingRequest:
        return self.r

    def setUp(self) -> None:
        self.server = make_server(make_institution())
        self.r = update_request_for(self.server, emails_to_add=["new@example.edu"])

    def test_it_needs_no_permission_on_servers_or_institutions(self) -> None:
        self.assert_approved_with_all_of_them()
        self.assertEqual(self.server.approved_users.get().email, "new@example.edu")

    def test_a_staffer_lacking_any_one_needed_permission_is_refused(self) -> None:
        self.assert_refused_without_each_needed_permission()


class TheApprovalFlowChecksPermissionsUnderItsLock(TestCase):
    def test_it_refuses_naming_what_is_missing_and_writes_nothing(self) -> None:
        r = submitted_request()
        user = staffer("half", "change_onboardingrequest", "add_institution")
        before = registry_state()
        with self.assertRaises(ReviewError) as caught:
            approve_request(r, user, check_permissions=True)
        self.assertIn(
            "add DICOMweb servers, add approved users", caught.exception.message
        )
        self.assertEqual(registry_state(), before)


class Rejecting(TestCase):
    def setUp(self) -> None:
        self.r = submitted_request()

    def test_it_needs_the_change_permission_on_requests(self) -> None:
        # Everything on the registry, but not on requests.
        self.client.force_login(
            staffer(
                "registrar",
                "view_onboardingrequest",
                "add_institution",
                "change_institution",
                "add_dicomwebserver",
                "change_dicomwebserver",
                "add_approveduser",
                "delete_approveduser",
            )
        )
        response = self.client.post(reject_url(self.r), {"reason": "No."})
        self.assertEqual(response.status_code, 403)
        response = self.client.post(approve_url(self.r))
        self.assertEqual(response.status_code, 403)
        self.r.refresh_from_db()
        self.assertEqual((self.r.status, self.r.reason), ("submitted", ""))
        self.assertFalse(DicomWebServer.objects.exists())

    def test_a_staffer_with_it_rejects(self) -> None:
        self.client.force_login(
            staffer("decider", "view_onboardingrequest", "change_onboardingrequest")
        )
        response = self.client.post(reject_url(self.r), {"reason": "Wrong URL."})
        self.assertEqual(response.status_code, 302)
        self.r.refresh_from_db()
        self.assertEqual((self.r.status, self.r.reason), ("rejected", "Wrong URL."))


LOOKUP_URL = "/admin/integrations/approveduser/lookup/"
ACCESS_URL = "/api/v1/access"


class TheAccessLookupPage(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution(), name="Lookup PACS")
        approve(cls.server, "jane@example.edu")

    def test_a_staffer_who_may_not_view_approved_users_is_refused(self) -> None:
        self.client.force_login(
            staffer("servers-only", "view_dicomwebserver", "view_institution")
        )
        response = self.client.get(LOOKUP_URL, {"email": "jane@example.edu"})
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"Lookup PACS", response.content)

    def test_a_staffer_who_may_view_approved_users_sees_the_servers(self) -> None:
        self.client.force_login(staffer("viewer", "view_approveduser"))
        response = self.client.get(LOOKUP_URL, {"email": "jane@example.edu"})
        self.assertContains(response, "Lookup PACS")


class TheAccessApiWithAStaffSession(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution(), name="Api PACS")
        approve(cls.server, "jane@example.edu")

    def test_it_needs_the_view_permission_on_approved_users(self) -> None:
        self.client.force_login(
            staffer("servers-only", "view_dicomwebserver", "view_institution")
        )
        response = self.client.get(ACCESS_URL, {"email": "jane@example.edu"})
        self.assertEqual(response.status_code, 403)
        self.assertNotIn(b"Api PACS", response.content)

    def test_with_it_the_staffer_gets_the_answer(self) -> None:
        self.client.force_login(staffer("viewer", "view_approveduser"))
        response = self.client.get(ACCESS_URL, {"email": "jane@example.edu"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual([s["name"] for s in response.json()["servers"]], ["Api PACS"])


class RecordingABrowserCheckFromTheServerPage(TestCase):
    REPORT = {
        "outcome": "ok",
        "findings": [{"code": "browser_ok", "message": "It worked (1 study)."}],
    }

    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())

    def record(self) -> Any:
        return self.client.post(
            reverse(
                "admin:integrations_dicomwebserver_browser_check",
                args=[self.server.pk],
            ),
            json.dumps(self.REPORT),
            content_type="application/json",
            headers={"Origin": "https://registry.example"},
        )

    def change_page(self) -> Any:
        return self.client.get(
            reverse("admin:integrations_dicomwebserver_change", args=[self.server.pk])
        )

    def test_a_view_only_staffer_is_refused_and_nothing_is_written(self) -> None:
        self.client.force_login(staffer("viewer", "view_dicomwebserver"))
        response = self.record()
        self.assertEqual(response.status_code, 403)
        self.assertIn("change servers", response.json()["detail"])
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_a_view_only_staffer_sees_no_browser_check_button(self) -> None:
        self.client.force_login(staffer("viewer", "view_dicomwebserver"))
        page = self.change_page()
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, "data-browser-check-run")

    def test_a_staffer_who_may_change_servers_records_it(self) -> None:
        self.client.force_login(
            staffer("editor", "view_dicomwebserver", "change_dicomwebserver")
        )
        self.assertContains(self.change_page(), "data-browser-check-run")
        response = self.record()
        self.assertEqual(response.status_code, 201)
        check = ConnectivityCheck.objects.get()
        self.assertEqual((check.server, check.source), (self.server, "browser"))
