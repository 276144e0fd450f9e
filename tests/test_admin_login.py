"""The admin login is protected against brute force (django-axes)."""

from __future__ import annotations

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import RequestFactory, TestCase, override_settings

from integrations.lockout import login_client


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

    def test_two_addresses_in_the_same_ipv6_64_share_one_counter(self) -> None:
        limit = settings.AXES_FAILURE_LIMIT
        for n in range(limit - 1):
            assert (
                self.login("wrong", address=f"2001:db8:1:2::{n + 1:x}").status_code
                == 200
            )
        # The last guess allowed from this /64, from yet another address in it.
        assert (
            self.login("wrong", address="2001:db8:1:2:ffff:ffff:ffff:ffff").status_code
            == 429
        )
        assert (
            self.login(self.password, address="2001:db8:1:2::abcd").status_code == 429
        )
        assert "_auth_user_id" not in self.client.session
        # The next /64 is another client.
        assert self.login(self.password, address="2001:db8:1:3::1").status_code == 302
        assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {
            "2001:db8:1:2::"
        }

    @override_settings(AXES_USERNAME_FAILURE_LIMIT=12)
    def test_failures_from_many_addresses_lock_the_user_name(self) -> None:
        per_client = settings.AXES_FAILURE_LIMIT - 1  # never enough to lock one
        statuses = []
        for n in range(12):
            address = f"198.51.100.{n // per_client + 1}"
            statuses.append(self.login("wrong", address=address).status_code)
        assert statuses == [200] * 11 + [429]
        # Locked from everywhere, even a fresh address with the right password,
        assert self.login(self.password, address="192.0.2.99").status_code == 429
        assert self.login(self.password, address="2001:db8:9::1").status_code == 429
        assert "_auth_user_id" not in self.client.session
        # but only that user name.
        get_user_model().objects.create_superuser("other", "o@example.org", "pw-2-xyz!")
        response = self.client.post(
            "/admin/login/?next=/admin/",
            {"username": "other", "password": "pw-2-xyz!"},
            REMOTE_ADDR="192.0.2.99",
        )
        assert response.status_code == 302

    def test_a_successful_login_elsewhere_does_not_unlock_a_locked_client(
        self,
    ) -> None:
        for _ in range(settings.AXES_FAILURE_LIMIT):
            self.login("wrong", address="203.0.113.7")
        assert self.login(self.password, address="198.51.100.2").status_code == 302
        self.client.logout()
        assert self.login(self.password, address="203.0.113.7").status_code == 429

    def test_the_default_per_user_cap_is_twenty(self) -> None:
        assert settings.AXES_USERNAME_FAILURE_LIMIT == 20
        assert settings.AXES_FAILURE_LIMIT < settings.AXES_USERNAME_FAILURE_LIMIT


class LoginClientTests(TestCase):
    def client_of(self, address: str) -> str:
        return login_client(RequestFactory().get("/", REMOTE_ADDR=address))

    def test_an_ipv4_client_is_its_address(self) -> None:
        assert self.client_of("203.0.113.7") == "203.0.113.7"

    def test_an_ipv6_client_is_its_64(self) -> None:
        assert self.client_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::"
        assert self.client_of("2001:DB8:1:2::9") == "2001:db8:1:2::"

    def test_an_ipv4_mapped_client_is_its_ipv4_address(self) -> None:
        assert self.client_of("::ffff:203.0.113.7") == "203.0.113.7"
