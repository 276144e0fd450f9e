"""The gate in the generated configurations (DESIGN.md "The gate"): present only
for an enforced server, a marked placeholder instead of the key in what pages
and the API show, the key in place in ``render_gated``; nginx and Caddy accept
both. Real requests through them: tests/test_edge_peers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.connectivity import pacsbinproxy, proxyconfig
from integrations.models import DicomWebServer, Institution
from tests import peers
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server

KEY = "12.s3cr3t-edge-KEY_value"
REGISTRY = "https://registry.example"


def server_for(
    *, enforced: bool = True, needs_credentials: bool = False, pk: int = 12
) -> DicomWebServer:
    server = DicomWebServer(
        pk=pk,
        institution=Institution(name="University Hospital"),
        name="University PACS",
        qido_url="http://127.0.0.1:8042/dicom-web",
        wado_url="http://127.0.0.1:8042/dicom-web",
        needs_credentials=needs_credentials,
    )
    server.edge_enforced = enforced  # type: ignore[attr-defined,unused-ignore]
    return server


def proxied_server_for(*, enforced: bool = True) -> DicomWebServer:
    server = DicomWebServer(
        pk=13,
        institution=Institution(name="University Hospital"),
        name="DIMSE PACS",
        qido_url="https://pacs-proxy.hospital.example",
        wado_url="https://pacs-proxy.hospital.example",
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": "PACS",
            "archive_host": "10.1.2.3",
            "archive_port": 11112,
            "proxy_ae_title": "PACSBIN",
            "proxy_dimse_port": 8888,
        },
    )
    server.edge_enforced = enforced  # type: ignore[attr-defined,unused-ignore]
    return server


@pytest.fixture(autouse=True)
def gate_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = REGISTRY
    settings.EDGE_CACHE_SECONDS = 30
    settings.EDGE_GRACE_SECONDS = 300


GATE_MARKS = {
    "nginx": ["auth_request /_pacsbin_edge_verify;", "X-Edge-Key", "proxy_cache "],
    "caddy": ["forward_auth", "X-Edge-Key", "header_up -Authorization"],
}


class TestTheGateIsThereOnlyWhenEnforced:
    @pytest.mark.parametrize("kind", ["nginx", "caddy"])
    def test_an_enforced_server_gets_the_gate(self, kind: str) -> None:
        config = proxyconfig.render(server_for(), kind)
        for mark in GATE_MARKS[kind]:
            assert mark in config

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    def test_a_server_not_enforced_gets_none_of_it(self, kind: str) -> None:
        config = proxyconfig.render(server_for(enforced=False), kind)
        for mark in ("auth_request", "forward_auth", "X-Edge-Key", "edge/verify"):
            assert mark not in config
        assert "gate" not in config.lower()

    def test_apache_says_plainly_it_cannot_and_points_to_nginx_and_caddy(
        self,
    ) -> None:
        config = proxyconfig.render(server_for(), "apache")
        lines = config.splitlines()
        assert lines and all(line.startswith("#") for line in lines)
        assert "Apache httpd cannot enforce it" in config
        assert "nginx or the Caddy configuration" in config
        assert "ProxyPass" not in config  # no way around the gate

    def test_a_server_without_the_field_yet_is_not_enforced(self) -> None:
        server = server_for(enforced=False)
        assert not proxyconfig.is_enforced(server)


class TestTheKey:
    @pytest.mark.parametrize("kind", ["nginx", "caddy"])
    def test_render_shows_a_marked_placeholder_never_a_key(self, kind: str) -> None:
        config = proxyconfig.render(server_for(), kind)
        assert f'X-Edge-Key "{proxyconfig.EDGE_KEY_PLACEHOLDER}"' in config
        assert f"EDIT: replace {proxyconfig.EDGE_KEY_PLACEHOLDER}" in config
        assert "/api/v1/servers/12/edge-key" in config
        assert KEY not in config

    def test_render_gated_puts_the_key_in_both(self) -> None:
        configs = proxyconfig.render_gated(server_for(), KEY)
        assert set(configs) == {"nginx", "caddy"}
        assert f'proxy_set_header X-Edge-Key "{KEY}";' in configs["nginx"]
        assert f'header_up X-Edge-Key "{KEY}"' in configs["caddy"]
        for config in configs.values():
            assert proxyconfig.EDGE_KEY_PLACEHOLDER not in config

    def test_render_gated_works_before_enforcement_is_switched_on(self) -> None:
        # The key is made first, then the switch: the configurations are ready.
        configs = proxyconfig.render_gated(server_for(enforced=False), KEY)
        assert "auth_request" in configs["nginx"]
        assert "forward_auth" in configs["caddy"]

    @pytest.mark.parametrize(
        ("key", "named"),
        [('a"b', '“"”'), ("a;b", "“;”"), ("$host", "“$”"), ("a\nb", "U+000A")],
    )
    def test_a_key_no_configuration_can_carry_is_refused_naming_it(
        self, key: str, named: str
    ) -> None:
        with pytest.raises(proxyconfig.ConfigRefused) as refused:
            proxyconfig.render_gated(server_for(), key)
        assert "edge key" in str(refused.value) and named in str(refused.value)

    def test_no_key_is_refused(self) -> None:
        with pytest.raises(proxyconfig.ConfigRefused):
            proxyconfig.render_gated(server_for(), "")


class TestWhatTheNginxGateSays:
    def test_it_asks_the_registry_forwarding_the_token_without_a_body(self) -> None:
        config = proxyconfig.render(server_for(), "nginx")
        assert f'proxy_pass "{REGISTRY}/api/v1/edge/verify";' in config
        assert "proxy_set_header Authorization $http_authorization;" in config
        assert "proxy_pass_request_body off;" in config
        assert "internal;" in config
        # https registry: its certificate is checked before the key is sent.
        assert "proxy_ssl_verify on;" in config

    def test_decisions_are_kept_per_token_for_the_cache_seconds(self, settings) -> None:  # type: ignore[no-untyped-def]
        settings.EDGE_CACHE_SECONDS = 2
        settings.EDGE_GRACE_SECONDS = 3
        config = proxyconfig.render(server_for(), "nginx")
        assert "proxy_cache_key $http_authorization;" in config
        assert "proxy_cache_valid 204 2s;" in config
        assert "proxy_cache pacsbin_edge_12;" in config
        # Only 204 is kept; a stale grant only within the registry's
        # stale-if-error: proxy_cache_use_stale would serve it without limit.
        assert "proxy_cache_valid any" not in config
        assert "proxy_cache_use_stale" not in config.replace(
            "No proxy_cache_use_stale here", ""
        )

    def test_the_verify_location_buffers_so_that_nginx_caches_at_all(self) -> None:
        # The server block's proxy_buffering off turns proxy_cache off.
        config = proxyconfig.render(server_for(), "nginx")
        verify = config[config.index("location = /_pacsbin_edge_verify") :]
        verify = verify[: verify.index("\n    }")]
        assert "proxy_buffering on;" in verify
        assert "proxy_cache pacsbin_edge_12;" in verify

    def test_the_cache_is_declared_once_at_http_level_where_nginx_can_write(
        self,
    ) -> None:
        config = proxyconfig.render(server_for(), "nginx")
        declared = [
            line for line in config.splitlines() if line.startswith("proxy_cache_path")
        ]
        assert declared == [
            "proxy_cache_path /var/cache/pacsbin-edge-12 levels=1:2 "
            "keys_zone=pacsbin_edge_12:4m max_size=64m inactive=330s "
            "use_temp_path=off;"
        ]
        assert config.index("proxy_cache_path") < config.index("server {")

    def test_preflights_are_answered_before_the_check(self) -> None:
        config = proxyconfig.render(server_for(), "nginx")
        # rewrite phase (if/return) runs before the access phase (auth_request)
        location = config[config.index('location "/dicom-web/"') :]
        assert location.index("return 204;") < location.index("auth_request")

    def test_refusals_and_the_503_keep_the_cors_headers(self) -> None:
        config = proxyconfig.render(server_for(), "nginx")
        unavailable = config[config.index("location @pacsbin_edge_unavailable") :]
        unavailable = unavailable[: unavailable.index("}")]
        assert "add_header Access-Control-Allow-Origin" in unavailable
        assert "always;" in unavailable and "return 503;" in unavailable
        assert "error_page 500 = @pacsbin_edge_unavailable;" in config

    def test_the_token_never_reaches_the_archive(self) -> None:
        config = proxyconfig.render(server_for(), "nginx")
        location = config[config.index('location "/dicom-web/"') :]
        assert 'proxy_set_header Authorization "";' in location
        assert "EDIT: the archive needs credentials" not in config

    def test_an_archive_needing_credentials_gets_a_marked_line_for_them(
        self,
    ) -> None:
        for kind in ("nginx", "caddy"):
            config = proxyconfig.render(server_for(needs_credentials=True), kind)
            assert "EDIT: the archive needs credentials" in config
            assert "never sent to browsers" in config

    def test_without_a_public_origin_the_registry_is_a_line_to_edit(
        self, settings
    ) -> None:  # type: ignore[no-untyped-def]
        settings.REGISTRY_PUBLIC_ORIGIN = ""
        config = proxyconfig.render(server_for(), "nginx")
        assert f'proxy_pass "{proxyconfig.REGISTRY_PLACEHOLDER}/api/v1/' in config


class TestWhatTheCaddyGateSays:
    def test_preflights_pass_unchecked_and_the_rest_asks_the_registry(self) -> None:
        config = proxyconfig.render(server_for(), "caddy")
        assert "@gated not method OPTIONS" in config
        assert "route @gated {" in config
        assert f'forward_auth "{REGISTRY}" {{' in config
        assert 'uri "/api/v1/edge/verify"' in config

    def test_an_unreachable_registry_is_a_503(self) -> None:
        config = proxyconfig.render(server_for(), "caddy")
        assert "handle_errors {" in config
        assert "respond @pacsbin_edge_unreachable 503" in config


class TestBehindPacsbinsProxy:
    def test_the_gates_nginx_takes_the_public_address_in_front_of_the_proxy(
        self,
    ) -> None:
        config = proxyconfig.render(proxied_server_for(), "nginx")
        assert 'location "/" {' in config
        assert (
            f'proxy_pass "http://127.0.0.1:{pacsbinproxy.BEHIND_GATE_PORT}/";' in config
        )
        assert "auth_request /_pacsbin_edge_verify;" in config
        assert "firewall that port" in config
        # The registered URLs stay the proxy's public address.
        assert "(pacs-proxy.hospital.example): use that as the server" in config
        assert "Register the proxy's URLs" not in config

    def test_the_proxy_moves_to_the_port_behind_the_gate_without_tls(self) -> None:
        text = proxyconfig.render(proxied_server_for(), "pacsbin")
        assert f'"webserverPort": {pacsbinproxy.BEHIND_GATE_PORT},' in text
        assert '"enabled": false,' in text
        assert "Firewall this port" in text

    def test_not_enforced_the_proxy_keeps_its_public_port(self) -> None:
        text = proxyconfig.render(proxied_server_for(enforced=False), "pacsbin")
        assert f'"webserverPort": {pacsbinproxy.BEHIND_GATE_PORT}' not in text
        assert '"enabled": true,' in text


@pytest.mark.peers
class TestTheToolsAcceptTheGatedConfigurations:
    @pytest.mark.parametrize("needs_credentials", [False, True])
    def test_nginx_t(
        self,
        tmp_path: Path,
        needs_credentials: bool,
        settings,  # type: ignore[no-untyped-def]
    ) -> None:
        # nginx -t resolves the upstream's name: no DNS here.
        settings.REGISTRY_PUBLIC_ORIGIN = "https://127.0.0.1:8443"
        server = server_for(needs_credentials=needs_credentials)
        for config in (
            proxyconfig.render(server, "nginx"),
            proxyconfig.render_gated(server, KEY)["nginx"],
            proxyconfig.render(proxied_server_for(), "nginx"),
        ):
            site = peers.patch_edge_cache(config)
            result = peers.nginx_syntax(tmp_path, site)
            assert result.returncode == 0, result.stderr

    @pytest.mark.parametrize("needs_credentials", [False, True])
    def test_caddy_validate(self, tmp_path: Path, needs_credentials: bool) -> None:
        peers.require(peers.CADDY)
        server = server_for(needs_credentials=needs_credentials)
        for config in (
            proxyconfig.render(server, "caddy"),
            proxyconfig.render_gated(server, KEY)["caddy"],
            proxyconfig.render(proxied_server_for(), "caddy"),
        ):
            result = peers.caddy_validate(config, tmp_path)
            assert result.returncode == 0, result.stdout + result.stderr

    def test_apache2_t_reads_the_comment_only_file(self, tmp_path: Path) -> None:
        import subprocess

        peers.require(peers.APACHE)
        config = proxyconfig.render(server_for(), "apache")
        main = peers.apache_main_config(tmp_path, config, peers.free_port())
        result = subprocess.run(
            [peers.APACHE, "-t", "-f", str(main)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


class TestWhatPagesShowForAProxiedServer:
    def test_the_gates_nginx_and_caddy_are_shown_beside_config_jsonc(self) -> None:
        view = proxyconfig.pacsbin_view(proxied_server_for())
        assert view.config and not view.refused
        assert [kind for kind, _text in view.gate] == ["nginx", "caddy"]
        for _kind, text in view.gate:
            assert proxyconfig.EDGE_KEY_PLACEHOLDER in text

    def test_not_enforced_there_is_no_gate(self) -> None:
        assert proxyconfig.pacsbin_view(proxied_server_for(enforced=False)).gate == []


class TheRegistryNeverShowsAKey(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = get_user_model().objects.create_superuser("admin", "a@b.example")
        cls.key, cls.raw = api_key("deploy-bot", "manage")
        cls.server = make_server(make_institution(), "Gated PACS")
        DicomWebServer.objects.filter(pk=cls.server.pk).update(edge_enforced=True)

    def test_the_api_gives_the_gated_configurations_with_the_placeholder(
        self,
    ) -> None:
        for kind, mark in [("nginx", "auth_request"), ("caddy", "forward_auth")]:
            response = self.client.get(
                f"/api/v1/servers/{self.server.pk}/proxy-config/{kind}",
                **key_header(self.raw),
            )
            assert response.status_code == 200
            text = response.content.decode()
            assert mark in text and proxyconfig.EDGE_KEY_PLACEHOLDER in text
        apache = self.client.get(
            f"/api/v1/servers/{self.server.pk}/proxy-config/apache",
            **key_header(self.raw),
        )
        assert apache.status_code == 200
        assert "cannot enforce" in apache.content.decode()

    def test_the_admin_server_page_shows_the_gate_with_the_placeholder(self) -> None:
        self.client.force_login(self.admin)
        page = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.server.pk}/change/"
        ).content.decode()
        assert "auth_request /_pacsbin_edge_verify;" in page
        assert proxyconfig.EDGE_KEY_PLACEHOLDER in page
