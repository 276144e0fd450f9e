"""The gate with real processes (DESIGN.md "The gate"): the registry served by
gunicorn, real nginx and Caddy running the configurations the registry's
``POST …/edge-key`` answers (changed only in ports, names, certificates and
the cache folder), in front of a real Orthanc with a study.

Decisions are kept EDGE_CACHE_SECONDS=2 and the grace is EDGE_GRACE_SECONDS=3
here, so every "within" below is a few seconds. The registry signs with a key
the test gives it (EDGE_SIGNING_KEY), so the test can sign the tokens no
registry would give (expired ones); the embedded key and its rotation have
their own test.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from integrations.connectivity import pacsbinproxy
from tests import peers, served

pytestmark = pytest.mark.peers

CACHE_SECONDS = 2
GRACE_SECONDS = 3
ORIGIN = "https://pacsbin.com"
# What a check may take beyond the cache time: polling, clocks, a slow worker.
SLACK = 1.5


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def cors(self) -> str | None:
        return self.headers.get("access-control-allow-origin")


def request(
    url: str,
    *,
    method: str = "GET",
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    body = json.dumps(data).encode() if data is not None else None
    sent = {"Origin": ORIGIN, **(headers or {})}
    if body is not None:
        sent["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return Answer(
                answer.status,
                {k.lower(): v for k, v in answer.headers.items()},
                answer.read(),
            )
    except urllib.error.HTTPError as exc:
        return Answer(
            exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Registry:
    site: served.Served
    origin: str  # REGISTRY_PUBLIC_ORIGIN: the gunicorn's second listener
    institution: int
    signing_key: ec.EllipticCurvePrivateKey | None = None

    def api(self, method: str, path: str, data: Any = None) -> Answer:
        return request(
            f"{self.site.url}/api/v1{path}",
            method=method,
            data=data,
            headers=self.site.headers,
        )

    def shell(self, code: str) -> str:
        return served.manage(served.base_env(**self.site.database), "shell", "-c", code)

    def enforced_server(self, archive: str, name: str) -> int:
        made = self.api(
            "POST",
            "/servers/",
            {
                "institution": self.institution,
                "name": name,
                "qido_url": archive,
                "wado_url": archive,
                "status": "active",
                "edge_enforced": True,
            },
        )
        assert made.status == 201, made.body
        return int(json.loads(made.body)["id"])

    def edge_key(self, server_id: int) -> dict[str, Any]:
        made = self.api("POST", f"/servers/{server_id}/edge-key")
        assert made.status == 201, made.body
        return json.loads(made.body)

    def approve(self, server_id: int, email: str) -> None:
        added = self.api(
            "POST", f"/servers/{server_id}/approved-users/", {"emails": [email]}
        )
        assert added.status in (200, 201), added.body

    def token(self, email: str, server_id: int) -> str:
        answer = self.api("GET", f"/access?email={email}")
        assert answer.status == 200, answer.body
        for entry in json.loads(answer.body)["servers"]:
            if entry["id"] == server_id:
                return str(entry["access_token"])
        raise AssertionError(f"{email} has no token for server {server_id}")

    def forged(self, email: str, server_id: int, *, exp: int, kid: str) -> str:
        """A token signed with the registry's own key, with any claims."""
        assert self.signing_key is not None
        now = int(time.time())
        claims = {
            "iss": self.origin,
            "sub": email,
            "aud": f"pacsbin-edge:{server_id}",
            "iat": now - 60,
            "exp": exp,
            "jti": "forged",
        }
        return jwt.encode(
            claims, self.signing_key, algorithm="ES256", headers={"kid": kid}
        )


# The registry's decisions come from a cache every worker shares (as in
# production): with each worker's own LocMemCache a write reaches the other
# workers only within the registry's 5 s local lifetime.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")


def registry_env(origin: str, **extra: str) -> dict[str, str]:
    require_redis()
    return {
        "CACHE_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": f"edge-peers-{secrets.token_hex(4)}",
        "REGISTRY_PUBLIC_ORIGIN": origin,
        "UPLOADER_ORIGINS": ORIGIN,
        "EDGE_CACHE_SECONDS": str(CACHE_SECONDS),
        "EDGE_GRACE_SECONDS": str(GRACE_SECONDS),
        **extra,
    }


def serve_registry(
    stack: ExitStack,
    tmp: Path,
    name: str,
    signing_key: ec.EllipticCurvePrivateKey | None,
) -> Registry:
    # The public origin must be known before gunicorn starts (it is the
    # tokens' iss and the configurations' verify URL): a second listener.
    port = peers.free_port()
    origin = f"http://127.0.0.1:{port}"
    extra = {}
    if signing_key is not None:
        extra["EDGE_SIGNING_KEY"] = signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    site = stack.enter_context(
        served.served(
            tmp,
            name,
            postgres_url=served.suite_postgres_url(),
            gunicorn_args=("--bind", f"127.0.0.1:{port}"),
            **registry_env(origin, **extra),
        )
    )
    registry = Registry(site, origin, 0, signing_key)
    found = registry.api("GET", f"/servers/{site.server_id}/")
    registry.institution = int(json.loads(found.body)["institution"])
    return registry


def start_nginx(stack: ExitStack, tmp: Path, config: str) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    site = peers.patch_edge_cache(config)
    return stack.enter_context(peers.nginx(tmp, site))


@dataclass
class World:
    registry: Registry
    orthanc: peers.Orthanc
    server: int  # enforced, behind nginx and Caddy
    other: int  # enforced, another server
    nginx: str
    caddy: str
    kid: str

    def qido(self, edge: str) -> str:
        return f"{edge}/dicom-web/studies"

    def wado(self, edge: str) -> str:
        return f"{edge}/dicom-web/studies/{self.orthanc.study_uids[0]}/metadata"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    peers.require(peers.NGINX, peers.CADDY)
    tmp = tmp_path_factory.mktemp("edge")
    signing_key = ec.generate_private_key(ec.SECP256R1())
    with ExitStack() as stack:
        (tmp / "orthanc").mkdir()
        orthanc = stack.enter_context(peers.orthanc(tmp / "orthanc"))
        registry = serve_registry(stack, tmp, "edge", signing_key)
        server = registry.enforced_server(orthanc.dicomweb, "Gated PACS")
        other = registry.enforced_server(orthanc.dicomweb, "Other PACS")
        configs = registry.edge_key(server)["configs"]
        nginx = start_nginx(stack, tmp / "nginx-a", configs["nginx"])
        caddy_home = tmp / "caddy-a"
        caddy_home.mkdir()
        caddy = stack.enter_context(peers.caddy(caddy_home, configs["caddy"]))
        registry.approve(server, "kid@hospital.example")
        kid = jwt.get_unverified_header(registry.token("kid@hospital.example", server))[
            "kid"
        ]
        yield World(registry, orthanc, server, other, nginx, caddy, kid)


EDGES = ["nginx", "caddy"]


def edge_of(world: World, kind: str) -> str:
    return world.nginx if kind == "nginx" else world.caddy


def refused_within(
    check: Callable[[], Answer], seconds: float, *, expected: tuple[int, ...]
) -> float:
    """Polls ``check`` until it answers one of ``expected``; how long that
    took. Fails past ``seconds``, or on any other status but a 200."""
    start = time.monotonic()
    while True:
        answer = check()
        took = time.monotonic() - start
        if answer.status in expected:
            assert answer.cors == ORIGIN, answer.headers
            return took
        assert answer.status == 200, (answer.status, answer.body)
        assert took <= seconds, f"still {answer.status} after {took:.1f} s"
        time.sleep(0.1)


class TestGrantsAndRefusals:
    @pytest.mark.parametrize("kind", EDGES)
    def test_an_approved_users_token_reads_qido_and_wado(
        self, world: World, kind: str
    ) -> None:
        email = f"reader-{kind}@hospital.example"
        world.registry.approve(world.server, email)
        token = world.registry.token(email, world.server)
        edge = edge_of(world, kind)
        found = request(world.qido(edge), headers=bearer(token))
        assert found.status == 200, found.body
        uids = {study["0020000D"]["Value"][0] for study in json.loads(found.body)}
        assert set(world.orthanc.study_uids) <= uids
        assert found.cors == ORIGIN
        metadata = request(world.wado(edge), headers=bearer(token))
        assert metadata.status == 200 and json.loads(metadata.body)
        assert metadata.cors == ORIGIN

    @pytest.mark.parametrize("kind", EDGES)
    def test_no_token_is_a_401_with_cors_headers(self, world: World, kind: str) -> None:
        answer = request(world.qido(edge_of(world, kind)))
        assert answer.status == 401
        assert answer.cors == ORIGIN
        assert answer.headers.get("www-authenticate", "").startswith("Bearer")

    @pytest.mark.parametrize("kind", EDGES)
    def test_the_preflight_passes_without_a_token(
        self, world: World, kind: str
    ) -> None:
        answer = request(
            world.qido(edge_of(world, kind)),
            method="OPTIONS",
            headers={
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert answer.status == 204
        assert answer.cors == ORIGIN
        assert "Authorization" in answer.headers["access-control-allow-headers"]

    @pytest.mark.parametrize("kind", EDGES)
    def test_every_bad_token_is_refused_with_cors_headers(
        self, world: World, kind: str
    ) -> None:
        email = f"victim-{kind}@hospital.example"
        world.registry.approve(world.server, email)
        world.registry.approve(world.other, f"elsewhere-{kind}@hospital.example")
        now = int(time.time())
        claims = {
            "iss": world.registry.origin,
            "sub": email,
            "aud": f"pacsbin-edge:{world.server}",
            "iat": now,
            "exp": now + 300,
        }
        none_header = _b64(json.dumps({"alg": "none", "kid": world.kid}).encode())
        bad = {
            "malformed": "not.a.jwt",
            "garbage": "x" * 300,
            "hs256": jwt.encode(
                claims,
                "a-shared-secret-of-32-bytes-or-more!",
                algorithm="HS256",
                headers={"kid": world.kid},
            ),
            "none": f"{none_header}.{_b64(json.dumps(claims).encode())}.",
            "another server's": world.registry.token(
                f"elsewhere-{kind}@hospital.example", world.other
            ),
            "expired": world.registry.forged(
                email, world.server, exp=now - 5, kid=world.kid
            ),
            "unknown key": jwt.encode(
                claims,
                ec.generate_private_key(ec.SECP256R1()),
                algorithm="ES256",
                headers={"kid": world.kid},
            ),
        }
        edge = edge_of(world, kind)
        for label, token in bad.items():
            for url in (world.qido(edge), world.wado(edge)):
                answer = request(url, headers=bearer(token))
                assert answer.status in (401, 403), (label, answer.status)
                assert answer.cors == ORIGIN, label
        # The registry's own signature on the same claims passes: the
        # refusals above are the tokens', not the request's.
        good = world.registry.forged(email, world.server, exp=now + 300, kid=world.kid)
        assert request(world.qido(edge), headers=bearer(good)).status == 200

    def test_the_token_verifies_with_the_jwks_alone(self, world: World) -> None:
        email = "jwks@hospital.example"
        world.registry.approve(world.server, email)
        token = world.registry.token(email, world.server)
        jwks = json.loads(world.registry.api("GET", "/edge/jwks.json").body)
        keys = jwt.PyJWKSet.from_dict(jwks)
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=f"pacsbin-edge:{world.server}",
            issuer=world.registry.origin,
        )
        assert claims["sub"] == email


class TestRevocationReachesTheEdge:
    """Each case: a grant is cached at the edge, the registry changes, and the
    edge refuses within EDGE_CACHE_SECONDS (nginx), at once (Caddy)."""

    def granted(self, world: World, email: str, server: int) -> str:
        world.registry.approve(server, email)
        token = world.registry.token(email, server)
        for edge in (world.nginx, world.caddy):
            assert request(world.qido(edge), headers=bearer(token)).status == 200
        return token

    def assert_refused_in_time(self, world: World, token: str, nginx: str) -> None:
        took = refused_within(
            lambda: request(f"{nginx}/dicom-web/studies", headers=bearer(token)),
            CACHE_SECONDS + SLACK,
            expected=(403,),
        )
        assert took <= CACHE_SECONDS + SLACK

    def test_removing_the_approval(self, world: World) -> None:
        email = "removed@hospital.example"
        token = self.granted(world, email, world.server)
        gone = world.registry.api(
            "DELETE", f"/servers/{world.server}/approved-users/{email}"
        )
        assert gone.status == 204
        assert request(world.qido(world.caddy), headers=bearer(token)).status == 403
        self.assert_refused_in_time(world, token, world.nginx)

    def test_expiring_the_approval(self, world: World) -> None:
        # The approval runs out with no write at all: time passing must do.
        email = "expiring@hospital.example"
        world.registry.approve(world.server, email)
        expires = time.time() + 6
        world.registry.shell(
            "from datetime import UTC, datetime; "
            "from integrations.models import ApprovedUser; "
            f"ApprovedUser.objects.filter(server_id={world.server}, "
            f"email_key='{email}').update("
            f"expires_at=datetime.fromtimestamp({expires}, UTC))"
        )
        token = world.registry.token(email, world.server)
        for edge in (world.nginx, world.caddy):
            assert request(world.qido(edge), headers=bearer(token)).status == 200
        refused_within(
            lambda: request(world.qido(world.nginx), headers=bearer(token)),
            expires - time.time() + CACHE_SECONDS + SLACK,
            expected=(403,),
        )
        assert time.time() >= expires - 1  # not before it ran out
        assert request(world.qido(world.caddy), headers=bearer(token)).status == 403

    def test_suspending_the_server_and_rotating_its_edge_key(
        self, world: World, tmp_path: Path
    ) -> None:
        # Servers of their own: these close the whole server.
        for change in ("suspend", "rotate"):
            server = world.registry.enforced_server(
                world.orthanc.dicomweb, f"PACS to {change}"
            )
            configs = world.registry.edge_key(server)["configs"]
            with ExitStack() as stack:
                nginx = start_nginx(stack, tmp_path / change, configs["nginx"])
                email = f"{change}@hospital.example"
                world.registry.approve(server, email)
                token = world.registry.token(email, server)
                url = f"{nginx}/dicom-web/studies"
                assert request(url, headers=bearer(token)).status == 200
                if change == "suspend":
                    patched = world.registry.api(
                        "PATCH", f"/servers/{server}/", {"status": "suspended"}
                    )
                    assert patched.status == 200, patched.body
                else:
                    world.registry.edge_key(server)  # the running nginx has the old
                self.assert_refused_in_time(world, token, nginx)


class TestTheRegistryStopped:
    def test_kept_grants_for_at_most_the_grace_then_503_never_an_unchecked_200(
        self, tmp_path: Path
    ) -> None:
        peers.require(peers.NGINX)
        (tmp_path / "orthanc").mkdir()
        with ExitStack() as edge_stack:
            orthanc = edge_stack.enter_context(peers.orthanc(tmp_path / "orthanc"))
            registry_stack = edge_stack.enter_context(ExitStack())
            registry = serve_registry(registry_stack, tmp_path, "edge_down", None)
            server = registry.enforced_server(orthanc.dicomweb, "Gated PACS")
            configs = registry.edge_key(server)["configs"]
            nginx = start_nginx(edge_stack, tmp_path / "nginx", configs["nginx"])
            url = f"{nginx}/dicom-web/studies"
            registry.approve(server, "kept@hospital.example")
            registry.approve(server, "never-asked@hospital.example")
            kept = registry.token("kept@hospital.example", server)
            never_asked = registry.token("never-asked@hospital.example", server)
            asked_at = time.monotonic()
            assert request(url, headers=bearer(kept)).status == 200
            registry_stack.close()  # gunicorn stopped, its database gone
            stopped_at = time.monotonic()
            # A token the edge never saw: no decision kept, closed at once.
            closed = request(url, headers=bearer(never_asked))
            assert closed.status == 503 and closed.cors == ORIGIN
            assert request(url).status in (401, 503)
            # The kept grant: served (from the cache, then stale) at most
            # EDGE_CACHE_SECONDS + EDGE_GRACE_SECONDS after it was given.
            statuses = []
            # nginx keeps expiries in whole seconds ("fresh until second N,
            # stale allowed through second N + grace"): up to 1 s more.
            bound = CACHE_SECONDS + GRACE_SECONDS + 1
            while time.monotonic() - asked_at < bound + 2.5:
                answer = request(url, headers=bearer(kept))
                statuses.append((round(time.monotonic() - asked_at, 1), answer.status))
                assert answer.status in (200, 503), statuses
                if answer.status == 200:
                    assert time.monotonic() - asked_at <= bound + 0.5, statuses
                else:
                    assert answer.cors == ORIGIN
                time.sleep(0.2)
            assert statuses[-1][1] == 503, statuses
            # And it was kept after the registry stopped (the grace exists).
            assert any(
                status == 200 and at > stopped_at - asked_at for at, status in statuses
            ), statuses
            # Once closed, it stays closed.
            first_503 = next(
                i for i, (_, status) in enumerate(statuses) if status == 503
            )
            assert all(status == 503 for _, status in statuses[first_503:]), statuses


class TestSigningKeyRotation:
    def test_the_jwks_keeps_the_old_key_and_old_tokens_still_verify(
        self, tmp_path: Path
    ) -> None:
        with ExitStack() as stack:
            registry = serve_registry(stack, tmp_path, "edge_rotate", None)
            server = registry.enforced_server(
                "http://127.0.0.1:9/dicom-web", "Rotated PACS"
            )
            registry.approve(server, "old@hospital.example")
            old = registry.token("old@hospital.example", server)
            old_kid = jwt.get_unverified_header(old)["kid"]
            served.manage(
                served.base_env(**registry.site.database), "rotate_edge_signing_key"
            )
            deadline = time.monotonic() + 15
            while True:
                jwks = json.loads(registry.api("GET", "/edge/jwks.json").body)
                kids = {key["kid"] for key in jwks["keys"]}
                if len(kids) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert old_kid in kids and len(kids) == 2, jwks
            key = next(
                k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == old_kid
            )
            claims = jwt.decode(
                old,
                key.key,
                algorithms=["ES256"],
                audience=f"pacsbin-edge:{server}",
                issuer=registry.origin,
            )
            assert claims["sub"] == "old@hospital.example"


class TestBehindPacsbinsProxy:
    def test_the_gates_nginx_in_front_of_the_proxy_enforces_it(
        self,
        world: World,
        orthanc_dimse: peers.Orthanc,
        pacsbin_proxy_entry: Path,
        tmp_path: Path,
    ) -> None:
        aet, dimse_port = "PXGATE" + secrets.token_hex(3).upper(), peers.free_port()
        made = world.registry.api(
            "POST",
            "/servers/",
            {
                "institution": world.registry.institution,
                "name": "DIMSE PACS behind the gate",
                "qido_url": "https://pacs-proxy.hospital.example",
                "wado_url": "https://pacs-proxy.hospital.example",
                "status": "active",
                "cors_mode": "dimse_proxy",
                "edge_enforced": True,
                "pacsbin_proxy": {
                    "mode": "dimse",
                    "archive_ae_title": orthanc_dimse.aet,
                    "archive_host": "127.0.0.1",
                    "archive_port": orthanc_dimse.dicom_port,
                    "proxy_ae_title": aet,
                    "proxy_dimse_port": dimse_port,
                },
            },
        )
        assert made.status == 201, made.body
        server = int(json.loads(made.body)["id"])
        gate = world.registry.edge_key(server)["configs"]["nginx"]
        config = world.registry.api("GET", f"/servers/{server}/proxy-config/pacsbin")
        assert config.status == 200
        jsonc = config.body.decode()
        behind = f'"webserverPort": {pacsbinproxy.BEHIND_GATE_PORT},'
        assert behind in jsonc
        # Only the ports change: the proxy's and, in nginx, where it points.
        proxy_port = peers.free_port()
        upstream = f"http://127.0.0.1:{pacsbinproxy.BEHIND_GATE_PORT}/"
        assert f'proxy_pass "{upstream}";' in gate
        gate = gate.replace(upstream, f"http://127.0.0.1:{proxy_port}/")
        email = "dimse-reader@hospital.example"
        world.registry.approve(server, email)
        token = world.registry.token(email, server)
        orthanc_dimse.register_modality(aet, aet, "127.0.0.1", dimse_port)
        try:
            with (
                peers.pacsbin_proxy(
                    pacsbin_proxy_entry,
                    tmp_path,
                    jsonc,
                    port=proxy_port,
                    dimse_port=dimse_port,
                ),
                ExitStack() as stack,
            ):
                edge = start_nginx(stack, tmp_path / "gate", gate)
                found = request(f"{edge}/studies?limit=1", headers=bearer(token))
                assert found.status == 200, found.body[:500]
                assert found.cors == ORIGIN
                uid = json.loads(found.body)[0]["0020000D"]["Value"][0]
                assert uid in orthanc_dimse.study_uids
                refused = request(f"{edge}/studies?limit=1")
                assert refused.status == 401 and refused.cors == ORIGIN
                other = world.registry.token("kid@hospital.example", world.server)
                assert (
                    request(f"{edge}/studies?limit=1", headers=bearer(other)).status
                    == 403
                )
        finally:
            orthanc_dimse.unregister_modality(aet)
