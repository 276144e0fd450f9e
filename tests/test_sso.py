"""Staff single sign-on (integrations/sso.py) against a fake provider served
on loopback: a discovery document, a token endpoint answering an ID token
signed with a key of its own, user info and its keys; and every way such a
provider can answer garbage, each a clean page, never a 500."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from integrations import sso
from tests import peers
from tests.test_settings import start

pytestmark = pytest.mark.django_db

CLIENT_ID = "registry"
SECRET = "client-secret-for-tests-0123456789"
PASSWORD = "correct horse battery staple 42"


class FakeProvider:
    """What each path answers: (status, content type, body); the ID token's
    claims are set per test (the nonce is taken from the login redirect)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims: dict[str, Any] = {}
        self.userinfo: dict[str, Any] = {}
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.token_requests: list[dict[str, list[str]]] = []
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.set_json("/jwks", {"keys": [{**public, "kid": "k1", "alg": "RS256"}]})
        self.set_json("/.well-known/openid-configuration", self.discovery())

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/me",
            "jwks_uri": f"{self.url}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def set_json(self, path: str, body: object, status: int = 200) -> None:
        self.routes[path] = (status, "application/json", json.dumps(body).encode())

    def id_token(self, nonce: str, key: Any = None, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": "alice",
            "nonce": nonce,
            "iat": now,
            "exp": now + 300,
            **changes,
        }
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": "k1"}
        )


@pytest.fixture
def provider(settings: Any) -> Iterator[FakeProvider]:
    served: dict[str, FakeProvider] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self) -> None:
            fake = served["it"]
            path = urlsplit(self.path).path
            if self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                fake.token_requests.append(
                    parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                )
            status, kind, body = fake.routes.get(path, (404, "text/plain", b"no"))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    served["it"] = FakeProvider(url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.OIDC_ISSUER = url
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = SECRET
    settings.OIDC_ONLY = False
    settings.REGISTRY_PUBLIC_ORIGIN = "https://registry.example"
    sso.forget_provider()
    try:
        yield served["it"]
    finally:
        sso.forget_provider()
        server.shutdown()
        server.server_close()


@pytest.fixture
def onboarding_staff() -> Group:
    group = Group.objects.create(name="onboarding-staff")
    group.permissions.add(Permission.objects.get(codename="view_dicomwebserver"))
    return group


def start_sign_in(client: Client) -> dict[str, str]:
    response = client.get("/oidc/authenticate/?next=/admin/")
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    return {name: values[0] for name, values in query.items()}


def sign_in(
    client: Client,
    fake: FakeProvider,
    claims: dict[str, Any],
    **token_changes: Any,
) -> Any:
    """The whole round trip: start, the provider's answer, the callback."""
    sent = start_sign_in(client)
    fake.set_json(
        "/token",
        {
            "access_token": "at",
            "token_type": "Bearer",
            "id_token": fake.id_token(sent["nonce"], **token_changes),
        },
    )
    fake.set_json("/me", {"sub": "alice", **claims})
    return client.get(f"/oidc/callback/?code=the-code&state={sent['state']}")


class TestSignIn:
    def test_a_mapped_staffer_gets_in_with_the_groups_permissions(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        Group.objects.create(name="other-group")
        response = sign_in(
            client,
            provider,
            {"email": "Alice@Example.org", "groups": ["onboarding-staff", "nope"]},
        )
        assert response.status_code == 302
        assert response["Location"] == "/admin/"
        user = get_user_model().objects.get(email="Alice@Example.org")
        assert user.is_staff and not user.is_superuser
        assert not user.has_usable_password()
        assert [g.name for g in user.groups.all()] == ["onboarding-staff"]
        assert user.has_perm("integrations.view_dicomwebserver")
        assert client.get("/admin/").status_code == 200
        # The redirect URI is the public origin's callback, at both steps.
        assert provider.token_requests[-1]["redirect_uri"] == [
            "https://registry.example/oidc/callback/"
        ]

    def test_the_email_claim_finds_the_existing_account_ignoring_case(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        user = get_user_model().objects.create_user(
            "alice", "alice@example.org", PASSWORD, is_staff=True
        )
        user.groups.add(Group.objects.create(name="dropped"))
        response = sign_in(
            client,
            provider,
            {"email": "ALICE@example.org", "groups": ["onboarding-staff"]},
        )
        assert response.status_code == 302
        assert get_user_model().objects.count() == 1
        # The groups are exactly the claim's registry groups.
        assert [g.name for g in user.groups.all()] == ["onboarding-staff"]

    def test_someone_in_no_registry_group_is_refused(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        response = sign_in(
            client, provider, {"email": "bob@example.org", "groups": ["sales"]}
        )
        assert response.status_code == 403
        assert b"bob@example.org is in no group of this registry" in response.content
        assert b"sales" in response.content
        assert "_auth_user_id" not in client.session
        assert not get_user_model().objects.filter(email="bob@example.org").exists()

    @pytest.mark.parametrize(
        "claims",
        [
            {"email": "a@example.org"},
            {"email": "a@example.org", "groups": {"onboarding-staff": 1}},
            {"email": "a@example.org", "groups": [None, 3]},
            {"groups": ["onboarding-staff"]},
            {"email": ["a@example.org"], "groups": ["onboarding-staff"]},
            {"email": "x" * 300 + "@e.org", "groups": ["onboarding-staff"]},
            {
                "email": "a@example.org",
                "email_verified": False,
                "groups": ["onboarding-staff"],
            },
        ],
    )
    def test_unusable_claims_are_refused_naming_why(
        self,
        client: Client,
        provider: FakeProvider,
        onboarding_staff: Group,
        claims: dict[str, Any],
    ) -> None:
        response = sign_in(client, provider, claims)
        assert response.status_code == 403
        assert b"sso-refusal" in response.content
        assert "_auth_user_id" not in client.session

    def test_a_deactivated_account_stays_out(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        get_user_model().objects.create_user(
            "alice", "alice@example.org", is_active=False
        )
        response = sign_in(
            client,
            provider,
            {"email": "alice@example.org", "groups": ["onboarding-staff"]},
        )
        assert response.status_code == 403
        assert b"deactivated" in response.content

    def test_the_groups_claim_name_is_a_setting(
        self,
        client: Client,
        provider: FakeProvider,
        onboarding_staff: Group,
        settings: Any,
    ) -> None:
        settings.OIDC_GROUPS_CLAIM = "roles"
        claims = {"email": "a@example.org", "roles": ["onboarding-staff"]}
        assert sign_in(client, provider, claims).status_code == 302


class TestGarbageFromTheProvider:
    def test_garbage_discovery_is_a_page_not_a_500(
        self, client: Client, provider: FakeProvider
    ) -> None:
        for body in (b"<html>", b"[1, 2]", b'{"issuer": 3}'):
            provider.routes["/.well-known/openid-configuration"] = (
                200,
                "application/json",
                body,
            )
            response = client.get("/oidc/authenticate/")
            assert response.status_code == 502
            assert b"discovery document" in response.content

    def test_a_discovery_document_for_another_issuer_is_refused(
        self, client: Client, provider: FakeProvider
    ) -> None:
        provider.set_json(
            "/.well-known/openid-configuration",
            {**provider.discovery(), "issuer": "https://evil.example"},
        )
        response = client.get("/oidc/authenticate/")
        assert response.status_code == 502
        assert b"evil.example" in response.content

    def test_a_missing_endpoint_is_named(
        self, client: Client, provider: FakeProvider
    ) -> None:
        document = provider.discovery()
        del document["token_endpoint"]
        provider.set_json("/.well-known/openid-configuration", document)
        response = client.get("/oidc/authenticate/")
        assert response.status_code == 502
        assert b"token_endpoint" in response.content

    def test_an_unreachable_issuer_is_a_page_not_a_500(
        self, client: Client, settings: Any
    ) -> None:
        settings.OIDC_ISSUER = f"http://127.0.0.1:{peers.free_port()}"
        settings.OIDC_CLIENT_ID = CLIENT_ID
        settings.OIDC_CLIENT_SECRET = SECRET
        sso.forget_provider()
        response = client.get("/oidc/authenticate/")
        assert response.status_code == 502
        assert b"cannot be reached" in response.content

    def test_a_token_signed_by_another_key_is_refused(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        claims = {"email": "a@example.org", "groups": ["onboarding-staff"]}
        response = sign_in(client, provider, claims, key=other)
        assert response.status_code == 400
        assert "_auth_user_id" not in client.session

    @pytest.mark.parametrize(
        "changes",
        [{"aud": "another-client"}, {"iss": "https://evil.example"}],
    )
    def test_a_token_for_another_client_or_issuer_is_refused(
        self,
        client: Client,
        provider: FakeProvider,
        onboarding_staff: Group,
        changes: dict[str, str],
    ) -> None:
        claims = {"email": "a@example.org", "groups": ["onboarding-staff"]}
        response = sign_in(client, provider, claims, **changes)
        assert response.status_code == 400
        assert "_auth_user_id" not in client.session

    @pytest.mark.parametrize(
        "answer",
        [b"not json", b"[]", b'{"access_token": "at"}', b'{"id_token": 5}'],
    )
    def test_a_garbage_token_answer_is_a_page_not_a_500(
        self, client: Client, provider: FakeProvider, answer: bytes
    ) -> None:
        sent = start_sign_in(client)
        provider.routes["/token"] = (200, "application/json", answer)
        response = client.get(f"/oidc/callback/?code=c&state={sent['state']}")
        assert response.status_code == 502
        assert "_auth_user_id" not in client.session

    def test_a_token_error_is_a_page_not_a_500(
        self, client: Client, provider: FakeProvider
    ) -> None:
        sent = start_sign_in(client)
        provider.set_json("/token", {"error": "invalid_grant"}, status=400)
        response = client.get(f"/oidc/callback/?code=c&state={sent['state']}")
        assert response.status_code == 502

    def test_a_callback_with_an_unknown_state_is_refused(
        self, client: Client, provider: FakeProvider
    ) -> None:
        start_sign_in(client)
        response = client.get("/oidc/callback/?code=c&state=forged")
        assert response.status_code == 400
        assert b"start again" in response.content

    def test_the_providers_own_error_is_shown(
        self, client: Client, provider: FakeProvider
    ) -> None:
        sent = start_sign_in(client)
        response = client.get(
            f"/oidc/callback/?error=access_denied&error_description=Nope"
            f"&state={sent['state']}"
        )
        assert response.status_code == 403
        assert b"access_denied" in response.content

    def test_user_info_about_someone_else_is_refused(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        sent = start_sign_in(client)
        provider.set_json(
            "/token",
            {"access_token": "a", "id_token": provider.id_token(sent["nonce"])},
        )
        provider.set_json(
            "/me",
            {"sub": "mallory", "email": "m@e.org", "groups": ["onboarding-staff"]},
        )
        response = client.get(f"/oidc/callback/?code=c&state={sent['state']}")
        assert response.status_code == 403
        assert "_auth_user_id" not in client.session


class TestPasswordLogin:
    def login(self, client: Client, username: str) -> Any:
        return client.post(
            "/admin/login/?next=/admin/", {"username": username, "password": PASSWORD}
        )

    @pytest.fixture
    def accounts(self) -> None:
        User = get_user_model()
        User.objects.create_superuser("root", "root@example.org", PASSWORD)
        User.objects.create_user("staff", "s@example.org", PASSWORD, is_staff=True)

    def test_without_sso_staff_use_passwords_and_no_button_shows(
        self, client: Client, accounts: None
    ) -> None:
        assert b"single sign-on" not in client.get("/admin/login/").content
        assert self.login(client, "staff").status_code == 302
        assert client.get("/oidc/authenticate/").status_code == 404
        assert client.get("/oidc/callback/?code=c&state=s").status_code == 404

    def test_with_sso_only_superusers_keep_their_password(
        self, client: Client, accounts: None, provider: FakeProvider
    ) -> None:
        page = client.get("/admin/login/?next=/admin/")
        assert b"Sign in with single sign-on" in page.content
        assert b'href="/oidc/authenticate/?next=%2Fadmin%2F"' in page.content
        assert b'name="password"' in page.content
        assert self.login(client, "staff").status_code == 200
        assert "_auth_user_id" not in client.session
        assert self.login(client, "root").status_code == 302

    def test_oidc_only_takes_the_password_form_away_from_everyone(
        self, client: Client, accounts: None, provider: FakeProvider, settings: Any
    ) -> None:
        settings.OIDC_ONLY = True
        page = client.get("/admin/login/")
        assert b"Sign in with single sign-on" in page.content
        assert b'name="password"' not in page.content
        response = self.login(client, "root")
        assert response.status_code == 403
        assert b"OIDC_ONLY" in response.content
        assert "_auth_user_id" not in client.session


class TestSettings:
    def test_a_partial_set_stops_start_up_naming_what_is_missing(self) -> None:
        result = start(DJANGO_DEBUG="1", OIDC_ISSUER="https://id.example")
        assert result.returncode != 0
        assert "missing: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET" in result.stderr

    def test_oidc_only_without_sso_stops_start_up(self) -> None:
        result = start(DJANGO_DEBUG="1", OIDC_ONLY="1")
        assert result.returncode != 0
        assert "OIDC_ONLY=1" in result.stderr

    def test_a_plain_http_issuer_off_loopback_is_refused(self) -> None:
        result = start(
            DJANGO_DEBUG="1",
            OIDC_ISSUER="http://id.example",
            OIDC_CLIENT_ID="c",
            OIDC_CLIENT_SECRET="s",
        )
        assert result.returncode != 0
        assert "OIDC_ISSUER='http://id.example'" in result.stderr

    def test_the_secret_may_come_from_a_file(self, tmp_path: Any) -> None:
        secret = tmp_path / "secret"
        secret.write_text("s3cret\n")
        result = start(
            DJANGO_DEBUG="1",
            OIDC_ISSUER="https://id.example/",
            OIDC_CLIENT_ID="c",
            OIDC_CLIENT_SECRET_FILE=str(secret),
        )
        assert result.returncode == 0, result.stderr


class TestLockout:
    def test_refused_sign_ons_never_lock_out_the_next_staffer(
        self, client: Client, provider: FakeProvider, onboarding_staff: Group
    ) -> None:
        for _ in range(8):
            refused = sign_in(client, provider, {"email": "b@e.org", "groups": []})
            assert refused.status_code == 403
        claims = {"email": "a@example.org", "groups": ["onboarding-staff"]}
        assert sign_in(client, provider, claims).status_code == 302
