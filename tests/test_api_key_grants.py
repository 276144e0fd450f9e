"""An API key is never a way around a permission: creating a key, or raising
its scope, needs every model permission the scope grants (or superuser), in
the admin and in ``create_api_key --created-by``. A key records the staffer
who made it, and the history of every change made with it names both."""

from __future__ import annotations

import io
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from integrations.api import permissions, urls
from integrations.models import ApiKey, ApprovedUser, Institution
from integrations.models.keys import SCOPE_PERMISSIONS
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server

ADD_URL = "/admin/integrations/apikey/add/"
MANAGE = SCOPE_PERMISSIONS["manage"]
ACCESS = SCOPE_PERMISSIONS["access"]


def staffer(username: str, *perms: str) -> Any:
    """A staff user holding exactly ``perms`` ("app.codename")."""
    user = get_user_model().objects.create_user(
        username, f"{username}@pacsbin.example", is_staff=True
    )
    codenames = [perm.split(".", 1)[1] for perm in perms]
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="integrations", codename__in=codenames
        )
    )
    assert user.user_permissions.count() == len(codenames), codenames
    return user


def add_form(name: str, scope: str) -> dict[str, str]:
    return {"name": name, "scope": scope, "expires_at_0": "", "expires_at_1": ""}


@override_settings(ACCESS_THROTTLE_RATE=None)
class AdminKeyCreationTests(TestCase):
    def post_add(self, user: Any, scope: str, name: str = "bot") -> Any:
        self.client.force_login(user)
        return self.client.post(ADD_URL, add_form(name, scope))

    def test_a_staffer_holding_only_add_api_key_cannot_create_a_manage_key(
        self,
    ) -> None:
        user = staffer("eve", "integrations.add_apikey")
        response = self.post_add(user, "manage")
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["scope"]
        assert "integrations.add_institution" in errors[0]
        assert "integrations.add_approveduser" in errors[0]
        assert "eve" in errors[0]
        assert not ApiKey.objects.exists()

    def test_nor_an_access_key_without_view_on_approved_users(self) -> None:
        user = staffer("eve", "integrations.add_apikey")
        response = self.post_add(user, "access")
        self.assertContains(response, "integrations.view_approveduser")
        assert not ApiKey.objects.exists()

    def test_each_permission_of_manage_is_needed(self) -> None:
        for missing in MANAGE:
            with self.subTest(missing=missing):
                held = [perm for perm in MANAGE if perm != missing]
                user = staffer(f"s-{missing}", "integrations.add_apikey", *held)
                response = self.post_add(user, "manage")
                errors = response.context["adminform"].form.errors["scope"]
                assert missing in errors[0]
                assert not any(perm in errors[0] for perm in held)
                assert not ApiKey.objects.exists()

    def test_a_staffer_holding_the_scopes_permissions_creates_the_key(self) -> None:
        user = staffer("alice", "integrations.add_apikey", *MANAGE)
        response = self.post_add(user, "manage")
        assert response.status_code == 200
        self.assertContains(response, 'id="raw-api-key"')
        key = ApiKey.objects.get()
        assert (key.scope, key.created_by) == ("manage", user)

    def test_an_access_key_needs_only_view_on_approved_users(self) -> None:
        user = staffer("alice", "integrations.add_apikey", *ACCESS)
        self.post_add(user, "access")
        assert ApiKey.objects.get().created_by == user

    def test_a_superuser_creates_any_key(self) -> None:
        boss = get_user_model().objects.create_superuser("boss", "b@example.org")
        self.post_add(boss, "manage")
        assert ApiKey.objects.get().created_by == boss

    def test_bad_input_is_a_form_error_never_a_500(self) -> None:
        boss = get_user_model().objects.create_superuser("boss", "b@example.org")
        for name, scope in [("bot", "root"), ("bot", ""), ("b\x00t", "access")]:
            with self.subTest(name=name, scope=scope):
                response = self.post_add(boss, scope, name=name)
                assert response.status_code == 200
                assert response.context["adminform"].form.errors
        assert not ApiKey.objects.exists()

    def test_without_add_api_key_the_form_is_refused(self) -> None:
        user = staffer("eve", *MANAGE)
        assert self.post_add(user, "manage").status_code == 403
        assert not ApiKey.objects.exists()

    def test_the_change_page_and_the_list_name_the_creator(self) -> None:
        user = staffer("alice", "integrations.view_apikey", *ACCESS)
        key, _raw = ApiKey.objects.create_key("bot", "access", created_by=user)
        self.client.force_login(user)
        self.assertContains(self.client.get("/admin/integrations/apikey/"), "alice")
        change = self.client.get(f"/admin/integrations/apikey/{key.pk}/change/")
        self.assertContains(change, "alice")


class AdminScopeRaiseTests(TestCase):
    def post_change(self, user: Any, key: ApiKey, scope: str, name: str = "") -> Any:
        self.client.force_login(user)
        return self.client.post(
            f"/admin/integrations/apikey/{key.pk}/change/",
            add_form(name or key.name, scope),
        )

    def test_raising_access_to_manage_is_refused_without_the_permissions(
        self,
    ) -> None:
        key, _raw = api_key("bot", "access")
        user = staffer("eve", "integrations.change_apikey", *ACCESS)
        response = self.post_change(user, key, "manage")
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["scope"]
        assert "integrations.delete_dicomwebserver" in errors[0]
        key.refresh_from_db()
        assert key.scope == "access"

    def test_raising_with_the_permissions_works(self) -> None:
        key, _raw = api_key("bot", "access")
        user = staffer("alice", "integrations.change_apikey", *MANAGE)
        response = self.post_change(user, key, "manage")
        assert response.status_code == 302
        key.refresh_from_db()
        assert key.scope == "manage"

    def test_lowering_a_scope_or_renaming_needs_nothing_more(self) -> None:
        key, _raw = api_key("bot", "manage")
        user = staffer("eve", "integrations.change_apikey")
        assert self.post_change(user, key, "manage", name="bot-2").status_code == 302
        assert self.post_change(user, key, "access", name="bot-2").status_code == 302
        key.refresh_from_db()
        assert (key.name, key.scope) == ("bot-2", "access")


class CommandCreatedByTests(TestCase):
    def create(self, *args: str) -> list[str]:
        out = io.StringIO()
        call_command("create_api_key", *args, stdout=out)
        return out.getvalue().splitlines()

    def test_the_shell_needs_no_creator(self) -> None:
        self.create("bot", "--scope", "manage")
        assert ApiKey.objects.get().created_by is None

    def test_a_creator_without_the_permissions_is_refused_naming_them(self) -> None:
        staffer("eve", *ACCESS)
        with self.assertRaisesMessage(CommandError, "integrations.add_institution"):
            self.create("bot", "--scope", "manage", "--created-by", "eve")
        assert not ApiKey.objects.exists()

    def test_a_creator_with_the_permissions_is_recorded(self) -> None:
        alice = staffer("alice", *MANAGE)
        self.create("bot", "--scope", "manage", "--created-by", "alice")
        assert ApiKey.objects.get().created_by == alice

    def test_an_unknown_creator_is_named(self) -> None:
        with self.assertRaisesMessage(CommandError, "no user “nobody”"):
            self.create("bot", "--scope", "access", "--created-by", "nobody")
        assert not ApiKey.objects.exists()


@override_settings(ACCESS_THROTTLE_RATE=None)
class HistoryNamesKeyAndCreatorTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.alice = staffer("alice", *MANAGE)
        cls.key, cls.raw = ApiKey.objects.create_key(
            "deploy-bot", "manage", created_by=cls.alice
        )
        cls.server = make_server(make_institution())

    def test_a_write_names_the_key_and_its_creator(self) -> None:
        response = self.client.post(
            "/api/v1/institutions/",
            {"name": "New Hospital"},
            content_type="application/json",
            **key_header(self.raw),
        )
        assert response.status_code == 201, response.content
        record = Institution.objects.get(name="New Hospital").history.get()
        assert record.history_actor == "api-key:deploy-bot (created by alice)"
        assert record.history_user == self.alice

    def test_bulk_writes_name_them_too(self) -> None:
        response = self.client.post(
            f"/api/v1/servers/{self.server.pk}/approved-users/",
            {"emails": ["a@example.org", "b@example.org"]},
            content_type="application/json",
            **key_header(self.raw),
        )
        assert response.status_code == 200, response.content
        rows = ApprovedUser.history.filter(server_id=self.server.pk)
        assert (
            sorted(rows.values_list("history_actor", "history_user"))
            == [("api-key:deploy-bot (created by alice)", self.alice.pk)] * 2
        )

    def test_a_key_made_at_the_shell_is_named_alone(self) -> None:
        _key, raw = api_key("shell-bot", "manage")
        self.client.post(
            "/api/v1/institutions/",
            {"name": "Shell Hospital"},
            content_type="application/json",
            **key_header(raw),
        )
        record = Institution.objects.get(name="Shell Hospital").history.get()
        assert (record.history_actor, record.history_user) == (
            "api-key:shell-bot",
            None,
        )


def test_manage_grants_every_permission_the_management_api_checks() -> None:
    """Derived from the API's own views, so a new management endpoint cannot
    give a manage key more than its creator needed to hold."""
    needed = set()
    for pattern in urls.urlpatterns:
        view = getattr(pattern.callback, "cls", None)
        model = getattr(view, "permission_model", None)
        if model is None:
            continue
        actions = getattr(pattern.callback, "actions", None)
        if actions:
            methods = set(actions)
        else:
            methods = {m for m in view.http_method_names if hasattr(view, m)}
        for method in methods - {"options", "head"}:
            action = permissions._STAFF_PERMISSION[method.upper()]
            needed.add(f"{model._meta.app_label}.{action}_{model._meta.model_name}")
    assert "integrations.delete_approveduser" in needed
    assert "integrations.add_connectivitycheck" in needed
    assert needed <= set(MANAGE), needed - set(MANAGE)
