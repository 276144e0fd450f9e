"""The fix-it configurations: what they say, and that nginx, Apache and Caddy
accept them (Apache also serving real requests in front of Orthanc)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.connectivity import probe, proxyconfig
from integrations.models import CheckOutcome, DicomWebServer, Institution
from tests import peers

PACSBIN = "https://pacsbin.com"


def server_for(
    qido: str, wado: str | None = None, *, needs_credentials: bool = False
) -> DicomWebServer:
    return DicomWebServer(
        pk=12,
        institution=Institution(name="University Hospital"),
        name="University PACS",
        qido_url=qido,
        wado_url=wado or qido,
        needs_credentials=needs_credentials,
    )


@pytest.fixture(autouse=True)
def origins(settings) -> None:  # type: ignore[no-untyped-def]
    settings.UPLOADER_ORIGINS = [PACSBIN]
    settings.REGISTRY_PUBLIC_ORIGIN = ""


class TestWhatTheConfigurationsSay:
    def test_an_unknown_kind_is_refused_with_a_clear_message(self) -> None:
        with pytest.raises(proxyconfig.UnknownKind, match="use one of nginx, apache"):
            proxyconfig.render(server_for("https://pacs.example.org/dw"), "haproxy")

    def test_the_allowed_origins_are_the_uploader_ones_plus_the_registry(
        self, settings
    ) -> None:
        settings.UPLOADER_ORIGINS = [PACSBIN, "https://beta.pacsbin.com"]
        settings.REGISTRY_PUBLIC_ORIGIN = "https://registry.example"
        assert proxyconfig.allowed_origins() == [
            PACSBIN,
            "https://beta.pacsbin.com",
            "https://registry.example",
        ]
        config = proxyconfig.render(server_for("https://pacs.example.org/dw"), "nginx")
        assert '"https://registry.example" $http_origin;' in config

    def test_nginx_is_a_complete_server_block_with_the_lines_to_edit(self) -> None:
        config = proxyconfig.render(
            server_for("https://pacs.example.org:8443/pacs/dicomweb"), "nginx"
        )
        assert "server {" in config
        assert "    listen 443 ssl;" in config
        assert "    server_name dicomweb-proxy.example.org;" in config
        assert 'location "/pacs/dicomweb/" {' in config
        assert 'proxy_pass "https://pacs.example.org:8443/pacs/dicomweb/";' in config
        assert "proxy_ssl_server_name on;" in config
        assert "return 204;" in config
        assert 'Access-Control-Allow-Credentials "true"' not in config
        assert "QIDO URL: https://dicomweb-proxy.example.org/pacs/dicomweb" in config

    def test_different_qido_and_wado_urls_get_two_locations(self) -> None:
        config = proxyconfig.render(
            server_for(
                "http://example.edu/pacs/dicomweb/qido",
                "http://example.edu/pacs/dicomweb/wado",
            ),
            "nginx",
        )
        assert 'location "/pacs/dicomweb/qido/" {' in config
        assert 'proxy_pass "http://example.edu/pacs/dicomweb/qido/";' in config
        assert 'location "/pacs/dicomweb/wado/" {' in config
        assert "WADO URL: https://dicomweb-proxy.example.org/pacs/dicomweb/wado" in (
            config
        )

    def test_urls_whose_paths_overlap_get_their_own_prefixes(self) -> None:
        routes = proxyconfig.routes("http://a.example/dw", "http://b.example/dw")
        assert [(r.prefix, r.upstream) for r in routes] == [
            ("/qido/", "http://a.example/dw/"),
            ("/wado/", "http://b.example/dw/"),
        ]

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    def test_credentials_are_allowed_only_when_the_archive_needs_them(
        self, kind: str
    ) -> None:
        url = "https://pacs.example.org/dw"
        allow = 'Access-Control-Allow-Credentials "true"'
        assert allow in proxyconfig.render(
            server_for(url, needs_credentials=True), kind
        )
        assert allow not in proxyconfig.render(server_for(url), kind)

    @pytest.mark.parametrize("kind", proxyconfig.KINDS)
    def test_every_kind_lists_authorization_by_name_and_never_a_wildcard(
        self, kind: str
    ) -> None:
        config = proxyconfig.render(server_for("https://pacs.example.org/dw"), kind)
        assert "Authorization, Accept" in config
        assert "Access-Control-Allow-Origin *" not in config
        assert 'Access-Control-Allow-Origin "*"' not in config
        assert "Vary" in config


@pytest.mark.peers
class TestTheServersAcceptThem:
    @pytest.mark.parametrize("credentials", [False, True])
    def test_caddy_validates_the_caddy_configuration(
        self, tmp_path: Path, credentials: bool
    ) -> None:
        peers.require(peers.CADDY)
        for qido, wado in [
            ("https://pacs.example.org/dicom-web", None),
            ("http://example.edu/pacs/qido", "http://example.edu/pacs/wado"),
        ]:
            server = server_for(qido, wado, needs_credentials=credentials)
            result = peers.caddy_validate(proxyconfig.render(server, "caddy"), tmp_path)
            assert result.returncode == 0, result.stdout + result.stderr

    def test_caddy_rejects_a_broken_configuration(self, tmp_path: Path) -> None:
        # Proves the validation above can fail.
        peers.require(peers.CADDY)
        assert peers.caddy_validate(
            "example.org {\n\tnot_a_directive\n}\n", tmp_path
        ).returncode

    @pytest.mark.parametrize("credentials", [False, True])
    def test_apache_accepts_the_apache_configuration(
        self, tmp_path: Path, credentials: bool
    ) -> None:
        peers.require(peers.APACHE)
        server = server_for(
            "https://pacs.example.org/dicom-web", needs_credentials=credentials
        )
        main = peers.apache_main_config(
            tmp_path, proxyconfig.render(server, "apache"), peers.free_port()
        )
        result = subprocess.run(
            [peers.APACHE, "-t", "-f", str(main)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "Syntax OK" in result.stderr

    def test_apache_rejects_a_broken_configuration(self, tmp_path: Path) -> None:
        peers.require(peers.APACHE)
        main = peers.apache_main_config(tmp_path, "Header bogus", peers.free_port())
        result = subprocess.run(
            [peers.APACHE, "-t", "-f", str(main)], capture_output=True, text=True
        )
        assert result.returncode != 0


@pytest.fixture
def apache_in_front_of(
    orthanc: peers.Orthanc, tmp_path: Path
) -> Iterator[tuple[str, DicomWebServer]]:
    peers.require(peers.APACHE)
    port = peers.free_port()
    server = server_for(orthanc.dicomweb, needs_credentials=True)
    main = peers.apache_main_config(
        tmp_path, proxyconfig.render(server, "apache"), port
    )
    url = f"http://127.0.0.1:{port}"
    with peers.running(
        [peers.APACHE, "-f", str(main), "-DFOREGROUND"],
        tmp_path / "apache" / "logs" / "stdout.log",
        f"{url}/",
    ):
        yield f"{url}/dicom-web", server


@pytest.mark.peers
@pytest.mark.usefixtures("allow_private")
class TestApacheInFrontOfOrthanc:
    def test_the_probe_gets_ok_through_apache(
        self, apache_in_front_of: tuple[str, DicomWebServer]
    ) -> None:
        url, _ = apache_in_front_of
        result = probe.probe(url, url, PACSBIN, needs_credentials=True)
        assert result.outcome == CheckOutcome.OK, result.findings
        assert [f.code for f in result.findings] == [
            "preflight_ok",
            "qido_ok",
            "errors_have_cors",
            "wado_ok",
        ]

    def test_another_origin_is_a_mismatch_through_apache(
        self, apache_in_front_of: tuple[str, DicomWebServer]
    ) -> None:
        url, _ = apache_in_front_of
        result = probe.probe(url, url, "https://evil.example", needs_credentials=True)
        assert result.outcome == CheckOutcome.CORS_ORIGIN_MISMATCH


@pytest.mark.peers
@pytest.mark.usefixtures("allow_private")
class TestCaddyInFrontOfOrthanc:
    @pytest.mark.parametrize("credentials", [False, True])
    def test_the_probe_gets_ok_through_caddy_and_a_mismatch_for_another_origin(
        self, orthanc: peers.Orthanc, tmp_path: Path, credentials: bool
    ) -> None:
        server = server_for(orthanc.dicomweb, needs_credentials=credentials)
        with peers.caddy(tmp_path, proxyconfig.render(server, "caddy")) as proxy:
            url = f"{proxy}/dicom-web"
            allowed = probe.probe(url, url, PACSBIN, needs_credentials=credentials)
            other = probe.probe(
                url, url, "https://evil.example", needs_credentials=credentials
            )
        assert allowed.outcome == CheckOutcome.OK, allowed.findings
        assert "wado_ok" in [f.code for f in allowed.findings]
        assert other.outcome == CheckOutcome.CORS_ORIGIN_MISMATCH
