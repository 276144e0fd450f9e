"""The gate's tokens in the access answer, the signing keys and the JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from integrations.edge import keys, tokens
from integrations.models import ApiKey, ApprovedUser, EdgeSigningKey, Institution
from pacsbin_integrations.env import Env
from tests.api_helpers import key_header
from tests.factories import api_key, server
from tests.test_settings import start

URL = "/api/v1/access"
JWKS = "/api/v1/edge/jwks.json"
JANE = "jane.doe@university.example"
ORIGIN = "https://registry.example"


def verified_with_jwks_alone(token: str, jwks: dict, server_id: int) -> dict:
    """What any edge with only the published JWKS (and PyJWT) can check."""
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    public = jwt.PyJWK(jwk).key
    return jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        audience=f"pacsbin-edge:{server_id}",
        issuer=ORIGIN,
    )


def thumbprint(jwk: dict) -> str:
    """RFC 7638, computed here independently of the code under test."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@override_settings(ACCESS_THROTTLE_RATE=None, REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class AccessTokenTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        institution = Institution.objects.create(name="University Hospital")
        cls.gated = server(institution, "Gated PACS", emails=[JANE])
        cls.gated.edge_enforced = True
        cls.gated.save()
        cls.open = server(institution, "Open PACS", emails=[JANE])

    def ask(self, fmt: str = "json", **headers: str):
        params = {"email": JANE, "format": fmt}
        return self.client.get(URL, params, **key_header(self.raw), **headers)

    def servers(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.ask().json()["servers"]}

    def test_an_enforced_server_carries_a_token_and_its_expiry(self) -> None:
        servers = self.servers()
        self.assertIn("access_token", servers["Gated PACS"])
        expires_at = servers["Gated PACS"]["access_token_expires_at"]
        self.assertRegex(expires_at, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertNotIn("access_token", servers["Open PACS"])
        self.assertNotIn("access_token_expires_at", servers["Open PACS"])

    def test_the_token_checks_out_with_the_jwks_alone(self) -> None:
        token = self.servers()["Gated PACS"]["access_token"]
        jwks = self.client.get(JWKS).json()
        claims = verified_with_jwks_alone(token, jwks, self.gated.pk)
        self.assertEqual(claims["sub"], JANE)
        self.assertEqual(claims["iss"], ORIGIN)
        self.assertEqual(claims["aud"], f"pacsbin-edge:{self.gated.pk}")
        self.assertEqual(claims["exp"] - claims["iat"], 600)
        self.assertTrue(claims["jti"])
        # iat is the start of the current window (half a lifetime): the token
        # has at least half its life left when handed out.
        self.assertLessEqual(0, time.time() - claims["iat"])
        self.assertLessEqual(time.time() - claims["iat"], 300 + 1)
        self.assertGreaterEqual(claims["exp"] - time.time(), 300 - 1)

    def test_the_header_names_es256_and_the_rfc_7638_thumbprint(self) -> None:
        token = self.servers()["Gated PACS"]["access_token"]
        header = jwt.get_unverified_header(token)
        self.assertEqual(header["alg"], "ES256")
        (jwk,) = self.client.get(JWKS).json()["keys"]
        self.assertEqual(header["kid"], jwk["kid"])
        self.assertEqual(jwk["kid"], thumbprint(jwk))
        self.assertEqual((jwk["kty"], jwk["crv"], jwk["alg"]), ("EC", "P-256", "ES256"))
        self.assertNotIn("d", jwk)  # never the private part

    def test_the_expiry_in_the_answer_is_the_tokens_exp(self) -> None:
        gated = self.servers()["Gated PACS"]
        exp = jwt.decode(gated["access_token"], options={"verify_signature": False})[
            "exp"
        ]
        shown = datetime.strptime(
            gated["access_token_expires_at"], "%Y-%m-%dT%H:%M:%SZ"
        )
        self.assertEqual(shown.replace(tzinfo=UTC).timestamp(), exp)

    @override_settings(EDGE_TOKEN_LIFETIME=60)
    def test_the_lifetime_follows_the_setting(self) -> None:
        token = self.servers()["Gated PACS"]["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        self.assertEqual(claims["exp"] - claims["iat"], 60)

    def test_a_token_is_reused_while_more_than_half_its_life_is_left(self) -> None:
        first = self.ask()
        again = self.ask()
        self.assertEqual(first.content, again.content)
        self.assertEqual(first["ETag"], again["ETag"])
        # The ETag still works: the reused token is the same answer.
        self.assertEqual(self.ask(HTTP_IF_NONE_MATCH=first["ETag"]).status_code, 304)
        later = time.time() + 301
        with mock.patch("integrations.edge.tokens.time.time", return_value=later):
            renewed = self.ask()
        self.assertNotEqual(
            first.json()["servers"][0]["access_token"],
            renewed.json()["servers"][0]["access_token"],
        )
        self.assertNotEqual(first["ETag"], renewed["ETag"])

    def test_a_new_token_changes_the_etag_so_an_old_tag_gets_the_full_answer(
        self,
    ) -> None:
        first = self.ask()
        later = time.time() + 301
        with mock.patch("integrations.edge.tokens.time.time", return_value=later):
            response = self.ask(HTTP_IF_NONE_MATCH=first["ETag"])
        self.assertEqual(response.status_code, 200)
        self.assertNotEqual(response["ETag"], first["ETag"])

    def test_every_worker_mints_the_same_token_so_the_etag_holds_across_them(
        self,
    ) -> None:
        first = self.ask()
        tokens.forget()  # another worker: nothing remembered
        again = self.ask(HTTP_IF_NONE_MATCH=first["ETag"])
        self.assertEqual(again.status_code, 304)
        self.assertEqual(again["ETag"], first["ETag"])

    def test_tokens_of_one_window_are_identical_and_of_the_next_differ(self) -> None:
        key = keys.current()
        now = 1_800_000_000
        start = tokens.window_start(now, 600)
        same = {tokens.mint(JANE, 7, key, start + offset).value for offset in (0, 299)}
        self.assertEqual(len(same), 1)
        self.assertNotEqual(tokens.mint(JANE, 7, key, start + 300).value, same.pop())
        claims = jwt.decode(
            tokens.mint(JANE, 7, key, start + 10).value,
            options={"verify_signature": False},
        )
        self.assertEqual((claims["iat"], claims["exp"]), (start, start + 600))

    def test_each_user_and_server_gets_its_own_token(self) -> None:
        other = "john.roe@university.example"
        ApprovedUser.objects.build(self.gated, other).save()
        mine = self.servers()["Gated PACS"]["access_token"]
        response = self.client.get(URL, {"email": other}, **key_header(self.raw))
        theirs = response.json()["servers"][0]["access_token"]
        self.assertNotEqual(mine, theirs)
        claims = jwt.decode(theirs, options={"verify_signature": False})
        self.assertEqual(claims["sub"], other)

    def test_the_ohif_servers_carry_the_token_too(self) -> None:
        from integrations.api import access

        by_name = {s["name"]: s for s in access.ohif_servers(JANE)}
        self.assertIn("access_token", by_name["Gated PACS"])
        self.assertNotIn("access_token", by_name["Open PACS"])
        self.assertEqual(self.ask("ohif").status_code, 200)

    def test_the_ohif_data_source_carries_the_token_the_way_ohif_takes_it(
        self,
    ) -> None:
        from urllib.parse import parse_qs

        from integrations.api import access

        # Pinned: OHIF 3.13.2 reads the bearer token from the viewer URL's
        # ``token`` parameter (tests/test_capabilities_peers.py pins the package).
        self.assertEqual(access.OHIF_TOKEN_PARAMETER, "token")
        sources = {
            source["configuration"]["name"]: source
            for source in self.ask("ohif").json()["dataSources"]
        }
        gated, open_ = sources["Gated PACS"], sources["Open PACS"]
        token = self.servers()["Gated PACS"]["access_token"]
        self.assertEqual(gated["accessToken"], token)
        self.assertTrue(gated["accessTokenExpiresAt"].endswith("Z"))
        self.assertEqual(
            parse_qs(gated["viewerQuery"]),
            {"datasources": [gated["sourceName"]], "token": [token]},
        )
        for key in ("accessToken", "accessTokenExpiresAt", "viewerQuery"):
            self.assertNotIn(key, open_)

    def test_an_expired_approval_leaves_the_answer(self) -> None:
        ApprovedUser.objects.filter(server=self.gated).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        self.assertEqual(list(self.servers()), ["Open PACS"])

    def test_an_approval_expiring_later_stays(self) -> None:
        ApprovedUser.objects.filter(server=self.gated).update(
            expires_at=timezone.now() + timedelta(minutes=5)
        )
        self.assertEqual(list(self.servers()), ["Gated PACS", "Open PACS"])


@override_settings(ACCESS_THROTTLE_RATE=None, REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class AccessTokenQueryCountTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        ApiKey.objects.filter(pk=cls.key.pk).update(last_used_at=timezone.now())
        cls.institution = Institution.objects.create(name="University Hospital")

    def test_an_answer_with_enforced_servers_is_still_one_query(self) -> None:
        for number in range(20):
            row = server(self.institution, f"Server {number}", emails=[JANE])
            row.edge_enforced = number % 2 == 0
            row.save()
        ApprovedUser.objects.filter(server__name="Server 3").update(
            expires_at=timezone.now() - timedelta(days=1)
        )
        auth = key_header(self.raw)
        self.client.get(URL, {"email": JANE}, **auth)  # key and signing key read
        tokens.forget()  # minting (not reuse) must not query either
        for fmt in ("json", "ohif"):
            with self.assertNumQueries(1):
                response = self.client.get(URL, {"email": JANE, "format": fmt}, **auth)
            self.assertEqual(response.status_code, 200)
        servers = self.client.get(URL, {"email": JANE}, **auth).json()["servers"]
        self.assertEqual(len(servers), 19)
        self.assertEqual(sum("access_token" in s for s in servers), 10)


@override_settings(ACCESS_THROTTLE_RATE=None, REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class SigningKeyTests(TestCase):
    def test_the_embedded_key_is_made_once_and_kept_in_the_database(self) -> None:
        self.assertEqual(EdgeSigningKey.objects.count(), 0)
        first = keys.current()
        keys.forget()
        self.assertEqual(keys.current().kid, first.kid)
        row = EdgeSigningKey.objects.get()
        self.assertIn("BEGIN PRIVATE KEY", row.private_pem)

    def test_rotation_keeps_the_old_public_key_until_its_last_token_expired(
        self,
    ) -> None:
        old = keys.current().kid
        out = StringIO()
        call_command("rotate_edge_signing_key", stdout=out)
        new = keys.current().kid
        self.assertNotEqual(old, new)
        self.assertIn(new, out.getvalue())
        published = {k["kid"] for k in self.client.get(JWKS).json()["keys"]}
        self.assertEqual(published, {old, new})
        # Still there just before the old key's last token expires...
        row = EdgeSigningKey.objects.get(kid=old)
        almost = keys.retention() - timedelta(seconds=5)
        EdgeSigningKey.objects.filter(pk=row.pk).update(
            retired_at=timezone.now() - almost
        )
        keys.forget()
        published = {k["kid"] for k in self.client.get(JWKS).json()["keys"]}
        self.assertEqual(published, {old, new})
        # ... and gone after.
        EdgeSigningKey.objects.filter(pk=row.pk).update(
            retired_at=timezone.now() - keys.retention() - timedelta(seconds=1)
        )
        keys.forget()
        published = {k["kid"] for k in self.client.get(JWKS).json()["keys"]}
        self.assertEqual(published, {new})

    def test_retention_covers_the_token_lifetime(self) -> None:
        with override_settings(EDGE_TOKEN_LIFETIME=3600):
            self.assertGreater(keys.retention(), timedelta(seconds=3600))

    def test_a_key_from_the_environment_signs_and_is_published(self) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        embedded = keys.current().kid
        keys.forget()
        with override_settings(EDGE_SIGNING_KEY=pem):
            current = keys.current()
            self.assertEqual(
                current.private_key.private_numbers(), private.private_numbers()
            )
            row = EdgeSigningKey.objects.get(kid=current.kid)
            self.assertEqual(row.private_pem, "")  # never stored
            published = {k["kid"] for k in self.client.get(JWKS).json()["keys"]}
            self.assertEqual(published, {embedded, current.kid})
            with self.assertRaisesMessage(ValueError, "EDGE_SIGNING_KEY is set"):
                keys.rotate()

    def test_the_jwks_needs_no_credentials_and_may_be_cached_a_short_while(
        self,
    ) -> None:
        response = self.client.get(JWKS)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/jwk-set+json")
        self.assertEqual(response["Cache-Control"], "public, max-age=60")
        self.assertEqual(self.client.post(JWKS).status_code, 405)


class SettingsTests(TestCase):
    def test_defaults(self) -> None:
        from django.conf import settings

        self.assertEqual(settings.EDGE_TOKEN_LIFETIME, 600)
        self.assertEqual(settings.EDGE_CACHE_SECONDS, 30)
        self.assertEqual(settings.EDGE_GRACE_SECONDS, 300)

    def test_the_env_reader_refuses_garbage(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "EDGE_CACHE_SECONDS"):
            Env({"EDGE_CACHE_SECONDS": "thirty"}).int("EDGE_CACHE_SECONDS", 30, 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EDGE_TOKEN_LIFETIME", "0"),
        ("EDGE_TOKEN_LIFETIME", "3601"),
        ("EDGE_TOKEN_LIFETIME", "ten"),
        ("EDGE_CACHE_SECONDS", "0"),
        ("EDGE_GRACE_SECONDS", "-1"),
        ("EDGE_SIGNING_KEY", "not a pem"),
    ],
)
def test_a_bad_gate_setting_stops_start_up_naming_it(name: str, value: str) -> None:
    result = start(DJANGO_SECRET_KEY="x" * 50, **{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_an_rsa_key_is_refused_naming_the_setting() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    result = start(DJANGO_SECRET_KEY="x" * 50, EDGE_SIGNING_KEY=pem)
    assert result.returncode != 0
    assert "EDGE_SIGNING_KEY: not an EC P-256 key" in result.stderr


def test_zero_grace_is_allowed() -> None:
    result = start(DJANGO_SECRET_KEY="x" * 50, EDGE_GRACE_SECONDS="0")
    assert result.returncode == 0, result.stderr
