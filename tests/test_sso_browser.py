"""Staff single sign-on end to end: a real OpenID provider (the npm package
oidc-provider, tests/oidc_provider.mjs) and Debian's Chromium. A staffer in
the registry's group logs in through the provider's own pages and lands in the
admin with that group's permissions; someone in no registry group is refused;
logging out ends the session.

Playwright's sync API runs an event loop in this thread while a browser is
open, and Django refuses ORM calls inside one: database work happens before
the browser opens and after it closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from integrations import sso
from tests import peers

pytestmark = [
    pytest.mark.browser,
    pytest.mark.peers,
    pytest.mark.django_db(transaction=True),
]

CLIENT_ID = "pacsbin-registry"
SECRET = "a-client-secret-for-the-tests-only"


def provider_sign_in(page: Any, login: str) -> None:
    """The provider's development pages: a login form, then consent."""
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.click("button[type=submit]:has-text('Continue')")


def test_staff_sign_in_through_a_real_provider(
    live_server: Any, settings: Any, tmp_path: Path
) -> None:
    peers.require(peers.CHROMIUM)
    group = Group.objects.create(name="onboarding-staff")
    group.permissions.add(Permission.objects.get(codename="view_dicomwebserver"))
    base = live_server.url
    with peers.oidc_provider(
        tmp_path,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        redirect_uri=f"{base}/oidc/callback/",
    ) as issuer:
        settings.OIDC_ISSUER = issuer
        settings.OIDC_CLIENT_ID = CLIENT_ID
        settings.OIDC_CLIENT_SECRET = SECRET
        # The callback URL registered at the provider is built on it.
        settings.REGISTRY_PUBLIC_ORIGIN = base
        sso.forget_provider()
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = peers.launch_chromium(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{base}/admin/")
                page.click("#sso-login")
                provider_sign_in(page, "alice")
                page.wait_for_url(f"{base}/admin/")
                index = page.content()
                logged_in_cookie = {c["name"] for c in page.context.cookies(base)}
                page.click("#logout-form button")
                page.goto(f"{base}/admin/")
                after_logout = page.url

                # Someone the provider knows, in none of the registry's groups.
                other = browser.new_page()
                other.set_default_timeout(15_000)
                other.goto(f"{base}/admin/login/")
                other.click("#sso-login")
                provider_sign_in(other, "bob")
                other.wait_for_selector("#sso-refusal")
                refusal = other.inner_text("#sso-refusal")
                other.goto(f"{base}/admin/")
                bob_after = other.url
            finally:
                browser.close()
        sso.forget_provider()

    assert "DICOMweb servers" in index
    # The group gives view on servers only: no institutions, no API keys.
    assert "Institutions" not in index
    assert "sessionid" in logged_in_cookie
    assert after_logout.startswith(f"{base}/admin/login/")
    alice = get_user_model().objects.get(email="alice@example.org")
    assert alice.is_staff and not alice.is_superuser
    assert [g.name for g in alice.groups.all()] == ["onboarding-staff"]
    assert "bob@example.org is in no group of this registry" in refusal
    assert bob_after.startswith(f"{base}/admin/login/")
    assert not get_user_model().objects.filter(email="bob@example.org").exists()
