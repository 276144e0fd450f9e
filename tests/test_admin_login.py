"""The admin login is protected against brute force (django-axes)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import TestCase


class LockoutTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.password = "the-right-password-1"
        get_user_model().objects.create_superuser(
            "staff", "s@example.org", cls.password
        )

    def login(self, password: str, address: str = "203.0.113.7"):
        return self.client.post(
            "/admin/login/?next=/admin/",
            {"username": "staff", "password": password},
            REMOTE_ADDR=address,
        )

    def test_the_right_password_logs_in(self) -> None:
        response = self.login(self.password)
        assert response.status_code == 302
        assert response["Location"] == "/admin/"

    def test_repeated_failures_lock_out_even_the_right_password(self) -> None:
        statuses = [
            self.login("wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)
        ]
        # The failure that reaches the limit is itself answered with the lockout.
        assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
        response = self.login(self.password)
        assert response.status_code == 429
        assert "_auth_user_id" not in self.client.session

    def test_the_lockout_is_per_client_address(self) -> None:
        for _ in range(settings.AXES_FAILURE_LIMIT):
            self.login("wrong", address="203.0.113.7")
        assert self.login(self.password, address="198.51.100.2").status_code == 302

    def test_a_login_redirect_never_leaves_the_site(self) -> None:
        response = self.client.post(
            "/admin/login/?next=https://evil.example/",
            {"username": "staff", "password": self.password},
        )
        assert response.status_code == 302
        assert not response["Location"].startswith("https://evil.example")
