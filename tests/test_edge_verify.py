"""GET /api/v1/edge/verify: what an archive's edge asks on every request."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import jwt
from django.core.cache import cache
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from integrations import registry
from integrations.edge import decisions, keys, tokens, usage
from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage, Institution
from tests.factories import server

URL = "/api/v1/edge/verify"
JANE = "jane.doe@university.example"
ORIGIN = "https://registry.example"


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(server_id: int, email: str = JANE, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ORIGIN,
        "sub": email,
        "aud": f"pacsbin-edge:{server_id}",
        "iat": now,
        "exp": now + 600,
        "jti": "test-jti",
    }
    claims.update(changes)
    return claims


def signed(claims: dict[str, Any]) -> str:
    """Signed with the registry's own current key (what a forger lacks)."""
    key = keys.current()
    return jwt.encode(
        claims, key.private_key, algorithm="ES256", headers={"kid": key.kid}
    )


@override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class VerifyTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(institution, "Gated PACS", emails=[JANE])
        cls.pacs.edge_enforced = True
        cls.pacs.save()
        cls.other = server(institution, "Other PACS", emails=[JANE])
        cls.other.edge_enforced = True
        cls.other.save()

    def setUp(self) -> None:
        self.edge_key = registry.replace_edge_key(self.pacs)
        self.token = tokens.token_for(JANE, self.pacs.pk).value
        # No flush in the middle of a test (each test flushes when it wants).
        patcher = mock.patch.object(usage, "FLUSH_SECONDS", 3600.0)
        patcher.start()
        self.addCleanup(patcher.stop)
        usage._last_flush = time.monotonic()

    def verify(
        self,
        token: str | None = None,
        edge_key: str | None = None,
        authorization: str | None = None,
        method: str = "get",
    ):
        headers = {"HTTP_X_EDGE_KEY": self.edge_key if edge_key is None else edge_key}
        if authorization is None and token is not False:
            authorization = f"Bearer {self.token if token is None else token}"
        if authorization is not None:
            headers["HTTP_AUTHORIZATION"] = authorization
        return getattr(self.client, method)(URL, **headers)

    def assert_granted(self, response) -> None:
        self.assertEqual(response.status_code, 204, response.content)
        self.assertEqual(response["X-Pacsbin-Email"], JANE)

    def assert_unauthorized(self, response) -> None:
        self.assertEqual(response.status_code, 401, response.content)
        self.assertTrue(response["WWW-Authenticate"].startswith("Bearer"))
        self.assertEqual(response["Cache-Control"], "no-store")

    def assert_forbidden(self, response) -> None:
        self.assertEqual(response.status_code, 403, response.content)
        self.assertEqual(response["Cache-Control"], "no-store")
        self.assertNotIn("X-Pacsbin-Email", response)


class GrantedTests(VerifyTestCase):
    def test_an_approved_users_token_is_a_204_naming_the_email(self) -> None:
        response = self.verify()
        self.assert_granted(response)
        self.assertEqual(response.content, b"")

    def test_a_grant_may_be_kept_for_edge_cache_seconds_plus_the_grace(self) -> None:
        self.assertEqual(
            self.verify()["Cache-Control"], "max-age=30, stale-if-error=300"
        )
        with override_settings(EDGE_CACHE_SECONDS=5, EDGE_GRACE_SECONDS=0):
            self.assertEqual(
                self.verify()["Cache-Control"], "max-age=5, stale-if-error=0"
            )

    def test_the_token_of_the_access_answer_works(self) -> None:
        from tests.factories import api_key

        _key, raw = api_key("uploader", "access")
        answer = self.client.get(
            "/api/v1/access", {"email": JANE}, HTTP_AUTHORIZATION=f"Api-Key {raw}"
        ).json()
        token = next(s for s in answer["servers"] if s["id"] == self.pacs.pk)[
            "access_token"
        ]
        self.assert_granted(self.verify(token))

    def test_any_method_answers_alike(self) -> None:
        for method in ("get", "head", "post", "put", "delete", "options"):
            with self.subTest(method=method):
                self.assertEqual(self.verify(method=method).status_code, 204)

    def test_the_scheme_name_ignores_case(self) -> None:
        self.assert_granted(self.verify(authorization=f"bearer {self.token}"))

    def test_a_warm_decision_runs_no_query(self) -> None:
        self.assert_granted(self.verify())
        with self.assertNumQueries(0):
            self.assert_granted(self.verify())
        other = signed(claims_for(self.pacs.pk, jti="another"))
        with self.assertNumQueries(0):  # a new token of a known user: no query
            self.assert_granted(self.verify(other))

    def test_a_server_not_enforcing_still_checks_tokens_alike(self) -> None:
        # Turning enforcement off stops minting; an edge still gated lets
        # valid tokens through and refuses the rest (never opens).
        self.pacs.edge_enforced = False
        self.pacs.save()
        self.assert_granted(self.verify())
        self.assert_unauthorized(self.verify(token=False))


class UnauthorizedTests(VerifyTestCase):
    def test_no_token_is_a_401(self) -> None:
        self.assert_unauthorized(self.verify(token=False))

    def test_an_empty_or_other_scheme_is_a_401(self) -> None:
        for value in ("", "Bearer", "Bearer ", f"Basic {self.token}", self.token):
            with self.subTest(value=value[:20]):
                self.assert_unauthorized(self.verify(authorization=value))

    def test_a_malformed_token_is_a_401(self) -> None:
        for token in ("abc", "a.b.c", "...", "." * 5000, self.token + "x", "é.é.é"):
            with self.subTest(token=token[:20]):
                self.assert_unauthorized(self.verify(token))

    def test_a_token_signed_with_hs256_is_a_401(self) -> None:
        kid = keys.current().kid
        for secret in ("secret-guess-0123456789-0123456789", keys.current().kid):
            forged = jwt.encode(
                claims_for(self.pacs.pk),
                secret,
                algorithm="HS256",
                headers={"kid": kid},
            )
            self.assert_unauthorized(self.verify(forged))

    def test_an_unsigned_alg_none_token_is_a_401(self) -> None:
        header = {"alg": "none", "typ": "JWT", "kid": keys.current().kid}
        for signature in ("", "c2ln"):
            forged = f"{b64(header)}.{b64(claims_for(self.pacs.pk))}.{signature}"
            self.assert_unauthorized(self.verify(forged))

    def test_a_token_signed_by_another_key_is_a_401(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        stranger = ec.generate_private_key(ec.SECP256R1())
        for kid in (keys.current().kid, "unknown-kid"):
            forged = jwt.encode(
                claims_for(self.pacs.pk),
                stranger,
                algorithm="ES256",
                headers={"kid": kid},
            )
            self.assert_unauthorized(self.verify(forged))

    def test_an_expired_token_is_a_401_after_one_second_of_leeway(self) -> None:
        exp = int(time.time()) + 60
        token = signed(claims_for(self.pacs.pk, exp=exp))
        with mock.patch("integrations.edge.decisions.time.time", return_value=exp):
            self.assert_granted(self.verify(token))
        with mock.patch("integrations.edge.decisions.time.time", return_value=exp + 1):
            self.assert_granted(self.verify(token))
        with mock.patch(
            "integrations.edge.decisions.time.time", return_value=exp + 1.01
        ):
            self.assert_unauthorized(self.verify(token))

    def test_a_token_expired_long_ago_is_a_401(self) -> None:
        token = signed(claims_for(self.pacs.pk, iat=1000, exp=1600))
        self.assert_unauthorized(self.verify(token))

    def test_another_issuer_is_a_401(self) -> None:
        token = signed(claims_for(self.pacs.pk, iss="https://evil.example"))
        self.assert_unauthorized(self.verify(token))

    def test_a_token_missing_a_claim_is_a_401(self) -> None:
        for claim in ("sub", "exp", "jti", "iss", "aud"):
            with self.subTest(claim=claim):
                claims = claims_for(self.pacs.pk)
                del claims[claim]
                self.assert_unauthorized(self.verify(signed(claims)))

    def test_a_token_signed_by_a_key_retired_long_ago_is_a_401(self) -> None:
        token = self.token
        keys.rotate()
        from integrations.models import EdgeSigningKey

        EdgeSigningKey.objects.exclude(kid=keys.current().kid).update(
            retired_at=timezone.now() - keys.retention() - timedelta(seconds=1)
        )
        keys.forget()
        decisions.forget()
        self.assert_unauthorized(self.verify(token))

    def test_a_token_of_a_key_just_rotated_still_works(self) -> None:
        token = self.token
        keys.rotate()
        decisions.forget()
        self.assert_granted(self.verify(token))


class ForbiddenTests(VerifyTestCase):
    def test_a_missing_or_malformed_edge_key_is_a_403(self) -> None:
        for key in ("", "garbage", ".", "1.", ".abc", "x.y", "١.abc", "0.abc"):
            with self.subTest(key=key):
                self.assert_forbidden(self.verify(edge_key=key))

    def test_a_wrong_secret_is_a_403(self) -> None:
        self.assert_forbidden(self.verify(edge_key=f"{self.pacs.pk}.wrong"))

    def test_another_servers_key_is_a_403(self) -> None:
        other_key = registry.replace_edge_key(self.other)
        self.assert_forbidden(self.verify(edge_key=other_key))

    def test_a_bad_edge_key_is_a_403_even_without_a_token(self) -> None:
        self.assert_forbidden(self.verify(token=False, edge_key="1.wrong"))

    def test_without_the_edge_key_no_signature_is_checked(self) -> None:
        # Anyone can reach verify: a caller without this server's key is
        # refused before the costly ES256 check of a token never seen.
        forged = [f"{self.token}x", self.token]
        with mock.patch.object(
            decisions, "_verify_signature", wraps=decisions._verify_signature
        ) as checked:
            for token in forged:
                self.assert_forbidden(
                    self.verify(token, edge_key=f"{self.pacs.pk}.wrong")
                )
            self.assertEqual(checked.call_count, 0)
            self.assert_granted(self.verify())
            self.assertEqual(checked.call_count, 1)
            self.assert_granted(self.verify())  # remembered: checked once
            self.assertEqual(checked.call_count, 1)

    def test_a_server_without_a_key_or_unknown_is_a_403(self) -> None:
        self.assert_forbidden(self.verify(edge_key=f"{self.other.pk}.anything"))
        self.assert_forbidden(self.verify(edge_key="999999.anything"))

    def test_a_rotated_edge_key_is_refused_at_once(self) -> None:
        self.assert_granted(self.verify())
        old = self.edge_key
        self.edge_key = registry.replace_edge_key(self.pacs)
        self.assert_forbidden(self.verify(edge_key=old))
        self.assert_granted(self.verify())

    def test_another_servers_token_is_a_403(self) -> None:
        theirs = tokens.token_for(JANE, self.other.pk).value
        self.assert_forbidden(self.verify(theirs))

    def test_an_approval_removed_is_refused_at_once(self) -> None:
        self.assert_granted(self.verify())  # the decision is now cached
        registry.remove_approved_users(self.pacs, [JANE])
        self.assert_forbidden(self.verify())

    def test_an_approval_deleted_one_by_one_is_refused_at_once(self) -> None:
        self.assert_granted(self.verify())
        ApprovedUser.objects.get(server=self.pacs).delete()
        self.assert_forbidden(self.verify())

    def test_an_approval_added_is_granted_at_once(self) -> None:
        registry.remove_approved_users(self.pacs, [JANE])
        self.assert_forbidden(self.verify())
        registry.add_approved_users(self.pacs, [JANE])
        self.assert_granted(self.verify())

    def test_an_approval_that_expired_is_refused(self) -> None:
        self.assert_granted(self.verify())
        row = ApprovedUser.objects.get(server=self.pacs)
        row.expires_at = timezone.now() - timedelta(seconds=1)
        row.save()
        self.assert_forbidden(self.verify())

    def test_an_approval_expiring_while_cached_is_refused_without_a_write(
        self,
    ) -> None:
        row = ApprovedUser.objects.get(server=self.pacs)
        row.expires_at = timezone.now() + timedelta(seconds=30)
        row.save()
        self.assert_granted(self.verify())
        later = time.time() + 31
        with mock.patch("integrations.edge.decisions.time.time", return_value=later):
            # The token itself is still valid then (600 s).
            self.assert_forbidden(self.verify())

    def test_a_suspended_server_is_refused_at_once(self) -> None:
        self.assert_granted(self.verify())
        registry.set_status(
            DicomWebServer.objects.filter(pk=self.pacs.pk),
            DicomWebServer.Status.SUSPENDED,
        )
        self.assert_forbidden(self.verify())

    def test_a_pending_server_is_refused(self) -> None:
        self.pacs.status = DicomWebServer.Status.PENDING
        self.pacs.save()
        self.assert_forbidden(self.verify())

    def test_an_email_never_approved_is_a_403(self) -> None:
        token = signed(claims_for(self.pacs.pk, email="mallory@evil.example"))
        self.assert_forbidden(self.verify(token))

    def test_a_sub_that_is_no_email_is_a_401(self) -> None:
        for sub in ("not an email \x00", "x" * 5000, "jane@"):
            with self.subTest(sub=sub[:20]):
                token = signed(claims_for(self.pacs.pk, email=sub))
                self.assert_unauthorized(self.verify(token))
        self.assertEqual(usage.flush(), 1)  # counted without the bad value

    def test_a_deleted_server_is_refused(self) -> None:
        self.assert_granted(self.verify())
        self.pacs.delete()
        self.assert_forbidden(self.verify())


class OddInputTests(VerifyTestCase):
    """No header, however odd, gets a 500."""

    def test_odd_authorization_headers(self) -> None:
        huge_header = b64({"alg": "ES256", "kid": "k" * 3000})
        values = [
            "Bearer " + "A" * 100_000,
            "Bearer " + "é" * 1000,
            "Bearer a\x00b.c.d",
            "Bearer " + "." * 3000,
            f"Bearer {huge_header}.{b64(claims_for(self.pacs.pk))}.sig",
            f"Bearer {b64(b'[1,2]')}.{b64(b'{}')}.sig",
            f"Bearer {b64(b'null')}.{b64(b'null')}.",
            f"Bearer {b64({'alg': 'ES256', 'kid': 7})}.{b64(b'{}')}.x",
            f"Bearer {b64({'alg': 'ES256', 'kid': ['a']})}.{b64(b'{}')}.x",
            "Bearer \udcff",
            "Bearer    spaced    ",
            "\t\n",
        ]
        for value in values:
            with self.subTest(value=value[:30]):
                self.assert_unauthorized(self.verify(authorization=value))

    def test_odd_claims_signed_by_the_registry(self) -> None:
        for changes in (
            {"sub": 7},
            {"aud": ["pacsbin-edge:1"]},
            {"exp": "soon"},
            {"iat": "now"},
        ):
            with self.subTest(changes=changes):
                response = self.verify(signed(claims_for(self.pacs.pk, **changes)))
                self.assertIn(response.status_code, (401, 403))

    def test_odd_edge_keys(self) -> None:
        for key in (
            "1" * 200,
            f"{self.pacs.pk}." + "x" * 10_000,
            f"{self.pacs.pk}.\x00",
            f"{self.pacs.pk}.é",
            "9" * 19 + ".x",
            "9" * 30 + ".x",
            "-1.x",
            "+1.x",
        ):
            with self.subTest(key=key[:30]):
                self.assert_forbidden(self.verify(edge_key=key))


class UsageTests(VerifyTestCase):
    def test_decisions_are_counted_per_server_email_and_day_and_flushed(
        self,
    ) -> None:
        self.verify()
        self.verify()
        tokens.forget()
        self.verify(tokens.token_for(JANE, self.other.pk).value)  # refused: 403
        self.verify(token=False)  # refused: 401, no email
        self.verify(edge_key="1.wrong")  # no server: not counted
        self.assertEqual(EdgeUsage.objects.count(), 0)  # nothing written yet
        self.assertEqual(usage.flush(), 2)
        today = timezone.now().date()
        jane = EdgeUsage.objects.get(server=self.pacs, email=JANE, day=today)
        self.assertEqual((jane.granted, jane.refused), (2, 1))
        self.assertIsNotNone(jane.last_used_at)
        anonymous = EdgeUsage.objects.get(server=self.pacs, email="")
        self.assertEqual((anonymous.granted, anonymous.refused), (0, 1))
        self.assertIsNone(anonymous.last_used_at)

    def test_flushes_add_up(self) -> None:
        self.verify()
        usage.flush()
        first = EdgeUsage.objects.get(email=JANE).last_used_at
        self.verify()
        self.verify()
        usage.flush()
        row = EdgeUsage.objects.get(email=JANE)
        self.assertEqual(row.granted, 3)
        self.assertGreaterEqual(row.last_used_at, first)

    def test_no_write_per_request_but_one_after_flush_seconds(self) -> None:
        self.verify()
        with self.assertNumQueries(0):
            self.verify()
        usage._last_flush = time.monotonic() - 4000
        with self.assertNumQueries(2):  # the servers that exist, the upsert
            self.verify()
        self.assertEqual(EdgeUsage.objects.get(email=JANE).granted, 3)

    def test_a_database_error_keeps_the_counts(self) -> None:
        from django.db import DatabaseError

        self.verify()
        with mock.patch.object(usage, "_write", side_effect=DatabaseError("down")):
            self.assertEqual(usage.flush(), 0)
        self.assertEqual(usage.flush(), 1)
        self.assertEqual(EdgeUsage.objects.get(email=JANE).granted, 1)

    def test_a_deleted_servers_counts_are_dropped(self) -> None:
        self.verify()
        self.pacs.delete()
        self.assertEqual(usage.flush(), 0)

    def test_last_used_is_in_the_approved_users_list(self) -> None:
        from tests.factories import api_key

        self.verify()
        usage.flush()
        _key, raw = api_key("manager", "manage")
        listed = self.client.get(
            f"/api/v1/servers/{self.pacs.pk}/approved-users/",
            HTTP_AUTHORIZATION=f"Api-Key {raw}",
        ).json()["results"]
        self.assertEqual(len(listed), 1)
        self.assertIsNotNone(listed[0]["last_used_at"])
        self.assertIsNone(listed[0]["expires_at"])
        other = self.client.get(
            f"/api/v1/servers/{self.other.pk}/approved-users/",
            HTTP_AUTHORIZATION=f"Api-Key {raw}",
        ).json()["results"]
        self.assertIsNone(other[0]["last_used_at"])


class SharedCacheTests(VerifyTestCase):
    def test_entries_are_short_lived_in_a_per_process_cache(self) -> None:
        self.assertEqual(decisions._entry_seconds(), decisions.LOCAL_CACHE_SECONDS)
        with override_settings(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": "redis://127.0.0.1:6379/11",
                }
            }
        ):
            self.assertEqual(decisions._entry_seconds(), decisions.SHARED_CACHE_SECONDS)

    def test_an_evicted_generation_never_revives_old_entries(self) -> None:
        self.assert_granted(self.verify())
        cache.delete(decisions._generation_key(self.pacs.pk))
        registry.remove_approved_users(self.pacs, [JANE])
        cache.delete(decisions._generation_key(self.pacs.pk))
        self.assert_forbidden(self.verify())


@override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class BackgroundFlushTests(TransactionTestCase):
    """With no later decision, a timer writes the counts (a quiet day's last
    use is not left in memory)."""

    def test_a_timer_writes_the_counts_without_another_decision(self) -> None:
        institution = Institution.objects.create(name="University Hospital")
        pacs = server(institution, "Gated PACS", emails=[JANE])
        edge_key = registry.replace_edge_key(pacs)
        token = tokens.token_for(JANE, pacs.pk).value
        usage._last_flush = time.monotonic()
        # Which thread writes, not how soon: a busy machine may take longer
        # than the timer to answer, so the request's own thread is the proof.
        writers: list[threading.Thread] = []
        write = usage._write

        def recording_write(taken: Any) -> int:
            writers.append(threading.current_thread())
            return write(taken)

        with (
            mock.patch.object(usage, "FLUSH_SECONDS", 0.3),
            mock.patch.object(usage, "BACKGROUND_FLUSH", True),
            mock.patch.object(usage, "_write", recording_write),
        ):
            response = self.client.get(
                URL, HTTP_X_EDGE_KEY=edge_key, HTTP_AUTHORIZATION=f"Bearer {token}"
            )
            self.assertEqual(response.status_code, 204)
            deadline = time.monotonic() + 10
            while not EdgeUsage.objects.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.assertEqual(len(writers), 1)
        self.assertIsNot(writers[0], threading.main_thread())
        row = EdgeUsage.objects.get()
        self.assertEqual((row.server_id, row.email, row.granted), (pacs.pk, JANE, 1))
        self.assertIsNone(usage._timer)


@override_settings(
    REGISTRY_PUBLIC_ORIGIN=ORIGIN,
    CACHES={
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # Nothing listens there: every cache call fails.
            "LOCATION": "redis://127.0.0.1:1/11",
        }
    },
)
class CacheDownTests(VerifyTestCase):
    """A cache that is down: decisions come from the database, writes go on."""

    def test_decisions_and_revocation_work_without_the_cache(self) -> None:
        with self.assertLogs("integrations.edge.decisions", "WARNING"):
            self.assert_granted(self.verify())
            registry.remove_approved_users(self.pacs, [JANE])
            self.assert_forbidden(self.verify())
            self.assert_forbidden(self.verify(edge_key=f"{self.pacs.pk}.wrong"))
