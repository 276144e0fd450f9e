"""The probe against real peers: Orthanc (DICOMweb plugin) alone and behind the
generated nginx configuration, plus its judgement of answers no peer gives."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.connectivity import client, probe, proxyconfig, ssrf
from integrations.models import CheckOutcome, DicomWebServer, Institution
from tests import peers

PACSBIN = "https://pacsbin.com"


def server_for(url: str, *, needs_credentials: bool = False) -> DicomWebServer:
    return DicomWebServer(
        pk=7,
        institution=Institution(name="University Hospital"),
        name="University PACS",
        qido_url=url,
        wado_url=url,
        needs_credentials=needs_credentials,
    )


def codes(result: probe.ProbeResult) -> list[str]:
    return [finding.code for finding in result.findings]


def raw(method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """A plain request through urllib (not the code under test)."""
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers.items())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items())


@pytest.fixture
def proxied(
    orthanc: peers.Orthanc, tmp_path: Path, settings
) -> Iterator[tuple[str, str]]:
    """Orthanc behind nginx with the configuration generated for pacsbin.com;
    yields (the proxy's DICOMweb URL, the configuration text)."""
    settings.UPLOADER_ORIGINS = [PACSBIN]
    config = proxyconfig.render(server_for(orthanc.dicomweb), "nginx")
    with peers.nginx(tmp_path, config) as url:
        yield f"{url}/dicom-web", config


pytestmark = [pytest.mark.peers, pytest.mark.usefixtures("allow_private")]


class TestOrthancAlone:
    def test_it_reports_the_missing_cors_header_and_the_refused_preflight_with_the_fix(
        self, orthanc: peers.Orthanc
    ) -> None:
        result = probe.probe(orthanc.dicomweb, orthanc.dicomweb, PACSBIN)
        assert result.outcome == CheckOutcome.CORS_MISSING
        found = {f.code: f for f in result.findings}
        assert "preflight_refused" in found
        assert found["preflight_refused"].outcome == CheckOutcome.PREFLIGHT_FAILED
        assert "answer OPTIONS with 204" in found["preflight_refused"].message
        missing = found["qido_cors_missing"].message
        assert "no Access-Control-Allow-Origin" in missing
        assert PACSBIN in missing
        assert "reverse proxy" in missing and "fix-it" in missing
        # The search itself is DICOMweb: that is not the problem.
        assert not any(c.startswith("qido_bad") for c in found)


class TestOrthancBehindTheGeneratedNginx:
    def test_an_allowed_origin_gets_ok_all_the_way_to_wado_metadata(
        self, proxied: tuple[str, str]
    ) -> None:
        url, _ = proxied
        result = probe.probe(url, url, PACSBIN)
        assert result.outcome == CheckOutcome.OK, result.findings
        assert codes(result) == [
            "preflight_ok",
            "qido_ok",
            "errors_have_cors",
            "wado_ok",
        ]

    def test_the_preflight_with_authorization_is_answered_by_the_proxy(
        self, proxied: tuple[str, str]
    ) -> None:
        url, _ = proxied
        status, headers = raw(
            "OPTIONS",
            f"{url}/studies",
            {
                "Origin": PACSBIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "accept, authorization",
            },
        )
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == PACSBIN
        allowed = [
            h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")
        ]
        assert "Authorization" in allowed
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Vary"] == "Origin"

    def test_a_404_carries_the_cors_headers_too(self, proxied: tuple[str, str]) -> None:
        url, _ = proxied
        status, headers = raw(
            "GET", f"{url}/studies/2.25.1/metadata", {"Origin": PACSBIN}
        )
        assert status == 404
        assert headers["Access-Control-Allow-Origin"] == PACSBIN
        assert "ETag" in headers["Access-Control-Expose-Headers"]

    def test_wado_metadata_of_a_study_found_by_qido_works_through_the_proxy(
        self, proxied: tuple[str, str], orthanc: peers.Orthanc
    ) -> None:
        url, _ = proxied
        search = client.fetch(
            "GET",
            f"{url}/studies?limit=1",
            {"Origin": PACSBIN, "Accept": probe.DICOM_JSON},
        )
        study_uid = json.loads(search.body)[0]["0020000D"]["Value"][0]
        assert study_uid in orthanc.study_uids
        metadata = client.fetch(
            "GET",
            f"{url}/studies/{study_uid}/metadata",
            {"Origin": PACSBIN, "Accept": probe.DICOM_JSON},
        )
        assert metadata.status == 200
        assert metadata.header("access-control-allow-origin") == PACSBIN
        instances = json.loads(metadata.body)
        assert len(instances) == 2
        assert {i["0020000D"]["Value"][0] for i in instances} == {study_uid}

    def test_an_origin_the_configuration_was_not_made_for_is_a_mismatch(
        self, proxied: tuple[str, str]
    ) -> None:
        url, _ = proxied
        result = probe.probe(url, url, "https://other.example")
        assert result.outcome == CheckOutcome.CORS_ORIGIN_MISMATCH
        message = {f.code: f.message for f in result.findings}[
            "qido_cors_origin_mismatch"
        ]
        assert "allows the origin https://pacsbin.com, not https://other.example" in (
            message
        )

    def test_a_registry_public_origin_is_allowed_too_when_set(
        self, orthanc: peers.Orthanc, tmp_path: Path, settings
    ) -> None:
        settings.UPLOADER_ORIGINS = [PACSBIN]
        settings.REGISTRY_PUBLIC_ORIGIN = "https://registry.example"
        config = proxyconfig.render(server_for(orthanc.dicomweb), "nginx")
        with peers.nginx(tmp_path, config) as proxy:
            url = f"{proxy}/dicom-web"
            for origin in (PACSBIN, "https://registry.example"):
                assert probe.probe(url, url, origin).outcome == CheckOutcome.OK

    def test_different_qido_and_wado_urls_map_through_their_own_prefixes(
        self, orthanc: peers.Orthanc, tmp_path: Path, settings
    ) -> None:
        settings.UPLOADER_ORIGINS = [PACSBIN]
        port = orthanc.url.rsplit(":", 1)[1]
        server = server_for(orthanc.dicomweb)
        server.wado_url = f"http://localhost:{port}/dicom-web"  # same path
        config = proxyconfig.render(server, "nginx")
        assert 'location "/qido/" {' in config and 'location "/wado/" {' in config
        with peers.nginx(tmp_path, config) as proxy:
            result = probe.probe(f"{proxy}/qido", f"{proxy}/wado", PACSBIN)
        assert result.outcome == CheckOutcome.OK, result.findings
        assert codes(result) == [
            "preflight_ok",
            "qido_ok",
            "errors_have_cors",
            "wado_preflight_ok",
            "wado_ok",
        ]


class TestTheCredentialsCase:
    def test_the_generated_configuration_echoes_the_origin_with_credentials(
        self, orthanc: peers.Orthanc, tmp_path: Path, settings
    ) -> None:
        settings.UPLOADER_ORIGINS = [PACSBIN, "https://beta.pacsbin.com"]
        server = server_for(orthanc.dicomweb, needs_credentials=True)
        config = proxyconfig.render(server, "nginx")
        with peers.nginx(tmp_path, config) as proxy:
            url = f"{proxy}/dicom-web"
            for origin in (PACSBIN, "https://beta.pacsbin.com"):
                result = probe.probe(url, url, origin, needs_credentials=True)
                assert result.outcome == CheckOutcome.OK, result.findings
                status, headers = raw("GET", f"{url}/studies", {"Origin": origin})
                assert headers["Access-Control-Allow-Origin"] == origin
                assert headers["Access-Control-Allow-Credentials"] == "true"
                assert headers["Vary"] == "Origin"

    def test_a_hand_written_wildcard_configuration_is_credentials_misconfigured(
        self, orthanc: peers.Orthanc, tmp_path: Path
    ) -> None:
        wildcard = f"""
server {{
    listen 443 ssl;
    server_name pacs.example.org;
    ssl_certificate /etc/ssl/x.pem;
    ssl_certificate_key /etc/ssl/x.key;
    location /dicom-web/ {{
        if ($request_method = OPTIONS) {{
            add_header Access-Control-Allow-Origin * always;
            add_header Access-Control-Allow-Headers "Authorization, Accept" always;
            return 204;
        }}
        add_header Access-Control-Allow-Origin * always;
        proxy_pass {orthanc.dicomweb}/;
    }}
}}
"""
        with peers.nginx(tmp_path, wildcard) as proxy:
            url = f"{proxy}/dicom-web"
            with_credentials = probe.probe(url, url, PACSBIN, needs_credentials=True)
            without = probe.probe(url, url, PACSBIN, needs_credentials=False)
        assert with_credentials.outcome == CheckOutcome.CREDENTIALS_MISCONFIGURED
        message = {f.code: f.message for f in with_credentials.findings}[
            "qido_wildcard_with_credentials"
        ]
        assert "Echo the origin (https://pacsbin.com)" in message
        assert "Access-Control-Allow-Credentials: true" in message
        # The same proxy is fine for an archive that needs no credentials.
        assert without.outcome == CheckOutcome.OK, without.findings


class TestOtherAnswers:
    def test_headers_missing_on_errors_are_reported_with_the_fix(
        self, orthanc: peers.Orthanc, tmp_path: Path
    ) -> None:
        # A common hand-written proxy: add_header without 'always'.
        config = f"""
server {{
    listen 443 ssl;
    server_name pacs.example.org;
    ssl_certificate /etc/ssl/x.pem;
    ssl_certificate_key /etc/ssl/x.key;
    location /dicom-web/ {{
        if ($request_method = OPTIONS) {{
            add_header Access-Control-Allow-Origin {PACSBIN};
            add_header Access-Control-Allow-Headers "Authorization";
            return 204;
        }}
        add_header Access-Control-Allow-Origin {PACSBIN};
        proxy_pass {orthanc.dicomweb}/;
    }}
}}
"""
        with peers.nginx(tmp_path, config) as proxy:
            url = f"{proxy}/dicom-web"
            result = probe.probe(url, url, PACSBIN)
        assert result.outcome == CheckOutcome.OK
        message = {f.code: f.message for f in result.findings}["errors_lack_cors"]
        assert "looks like a CORS failure" in message
        assert "always" in message

    def test_a_certificate_the_probe_cannot_trust_is_a_tls_error(
        self, orthanc: peers.Orthanc, tmp_path: Path, settings
    ) -> None:
        settings.UPLOADER_ORIGINS = [PACSBIN]
        config = proxyconfig.render(server_for(orthanc.dicomweb), "nginx")
        with peers.nginx(tmp_path, config, tls=True) as proxy:
            url = f"{proxy}/dicom-web"
            result = probe.probe(url, url, PACSBIN)
        assert result.outcome == CheckOutcome.TLS_ERROR
        assert codes(result) == ["tls_error"]
        assert "certificate" in result.findings[0].message

    def test_tls_is_verified_for_the_url_name_while_connecting_to_the_checked_ip(
        self,
        orthanc: peers.Orthanc,
        tmp_path: Path,
        settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The certificate is for "localhost". The names below resolve (fake
        # DNS) to 127.0.0.1 once, in the guard; the client connects to that
        # address but sends the name for SNI, Host and the certificate check.
        settings.UPLOADER_ORIGINS = [PACSBIN]
        resolved = {"localhost": ["127.0.0.1"], "archive.test": ["127.0.0.1"]}
        monkeypatch.setattr(ssrf, "resolve", lambda host, port: resolved[host])
        config = proxyconfig.render(server_for(orthanc.dicomweb), "nginx")
        with peers.nginx(tmp_path, config, tls=True) as proxy:
            port = proxy.rsplit(":", 1)[1]
            cert, _ = peers.self_signed_certificate(tmp_path)
            monkeypatch.setattr(client, "CA_CERTS", str(cert))
            good = f"https://localhost:{port}/dicom-web"
            assert probe.probe(good, good, PACSBIN).outcome == CheckOutcome.OK
            wrong_name = f"https://archive.test:{port}/dicom-web"
            result = probe.probe(wrong_name, wrong_name, PACSBIN)
        assert result.outcome == CheckOutcome.TLS_ERROR
        assert "archive.test" in result.findings[0].message

    def test_a_url_that_is_not_the_dicomweb_root_is_not_dicomweb(
        self, orthanc: peers.Orthanc
    ) -> None:
        result = probe.probe(orthanc.url, orthanc.url, PACSBIN)
        assert result.outcome == CheckOutcome.NOT_DICOMWEB
        assert "qido_bad_status" in codes(result)
        assert "DICOMweb root" in result.findings[-1].message or any(
            "DICOMweb root" in f.message for f in result.findings
        )


def scripted(answers: dict[tuple[str, str], client.Response]):  # type: ignore[no-untyped-def]
    """A fake fetch answering (method, url) from a script; 404 otherwise."""

    def fetch(method: str, url: str, headers: dict[str, str], **kwargs: object):  # type: ignore[no-untyped-def]
        return answers.get((method, url)) or answer(url, 404, {}, b"")

    return fetch


def answer(
    url: str, status: int, headers: dict[str, str], body: bytes
) -> client.Response:
    return client.Response(
        url=url,
        status=status,
        headers=client.urllib3.HTTPHeaderDict(headers),
        body=body,
    )


ARCHIVE = "https://pacs.example.org/dicomweb"
GOOD_PREFLIGHT = {
    "Access-Control-Allow-Origin": PACSBIN,
    "Access-Control-Allow-Headers": "Authorization, Accept",
}


@pytest.mark.django_db(databases=[])
class TestTheJudgementOfAnswers:
    """Answers no local peer gives, judged as a browser would."""

    def run(self, search: client.Response, preflight: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        script = {
            ("OPTIONS", f"{ARCHIVE}/studies"): answer(
                f"{ARCHIVE}/studies", 204, preflight or GOOD_PREFLIGHT, b""
            ),
            ("GET", f"{ARCHIVE}/studies?limit=1"): search,
        }
        return probe.probe(ARCHIVE, ARCHIVE, PACSBIN, fetch=scripted(script))

    def search(self, status: int, headers: dict[str, str], body: bytes = b""):  # type: ignore[no-untyped-def]
        return answer(f"{ARCHIVE}/studies?limit=1", status, headers, body)

    def test_a_204_with_no_body_is_a_valid_empty_search(self) -> None:
        result = self.run(self.search(204, {"Access-Control-Allow-Origin": "*"}))
        assert result.outcome == CheckOutcome.OK
        assert "wado_not_tested" in codes(result)

    def test_an_html_page_is_not_dicomweb(self) -> None:
        result = self.run(
            self.search(
                200,
                {"Content-Type": "text/html", "Access-Control-Allow-Origin": "*"},
                b"<html>",
            )
        )
        assert result.outcome == CheckOutcome.NOT_DICOMWEB
        assert "text/html" in result.findings[1].message

    def test_json_that_is_not_an_array_is_not_dicomweb(self) -> None:
        result = self.run(
            self.search(200, {"Content-Type": "application/json"}, b'{"studies": []}')
        )
        assert result.outcome == CheckOutcome.NOT_DICOMWEB
        assert "qido_not_json_array" in codes(result)

    def test_an_origin_sent_twice_is_refused_like_a_browser_does(self) -> None:
        search = self.search(200, {"Content-Type": probe.DICOM_JSON}, b"[]")
        search.headers.add("Access-Control-Allow-Origin", PACSBIN)
        search.headers.add("Access-Control-Allow-Origin", "*")
        result = self.run(search)
        assert result.outcome == CheckOutcome.CORS_ORIGIN_MISMATCH
        assert "qido_cors_duplicate" in codes(result)

    def test_a_wildcard_in_allowed_headers_does_not_cover_authorization(self) -> None:
        search = self.search(
            200,
            {"Content-Type": probe.DICOM_JSON, "Access-Control-Allow-Origin": "*"},
            b"[]",
        )
        result = self.run(
            search,
            {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "*"},
        )
        assert result.outcome == CheckOutcome.PREFLIGHT_FAILED
        message = result.findings[0].message
        assert "a * never covers Authorization: list it by name" in message
