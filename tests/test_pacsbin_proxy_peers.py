"""Pacsbin's real proxy (built from ../shared/peers with its build.sh) in front
of a real Orthanc, run with the registry's generated config.jsonc changed only
in its ports, storage folder and TLS (tests/peers.py patch_pacsbin_config).

dimse mode: the proxy asks Orthanc's DIMSE port; Orthanc answers it only once
its AE title is registered as a modality (PUT /modalities/NAME), as an
archive's administrator would after reading the registry's sheet.
dicomweb mode: the proxy forwards to an archive whose DICOMweb root is at /
(a small nginx mapping / to Orthanc's /dicom-web/); where the root has a path
the registry refuses in plain words instead.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from integrations.connectivity import client, proxyconfig, run_check
from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding.links import status_link
from tests import peers
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server
from tests.onboarding_helpers import confirmation_path, fresh_cache

pytestmark = [pytest.mark.peers, pytest.mark.django_db]

UPLOADER = "https://pacsbin.com"
FOREIGN = "https://evil.example"


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def unique_aet() -> str:
    return "PX" + uuid.uuid4().hex[:10].upper()


def dimse_server(
    orthanc: peers.Orthanc, origin: str, aet: str, dimse_port: int, **fields: Any
) -> DicomWebServer:
    server = make_server(
        make_institution("County General"),
        "County PACS",
        qido_url=origin,
        wado_url=origin,
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": orthanc.aet,
            "archive_host": "127.0.0.1",
            "archive_port": orthanc.dicom_port,
            "proxy_ae_title": aet,
            "proxy_dimse_port": dimse_port,
        },
        **fields,
    )
    server.full_clean()  # the settings pass the registry's own rule
    return server


@pytest.fixture
def _origins(settings: Any) -> None:
    settings.UPLOADER_ORIGINS = [UPLOADER]
    # Served under the uploader's origin: the configurations allow that one
    # origin, and mailed links (required with debug off) have an origin.
    settings.REGISTRY_PUBLIC_ORIGIN = UPLOADER


def test_dimse_mode_through_the_real_proxy(
    orthanc_dimse: peers.Orthanc,
    pacsbin_proxy_entry: Path,
    tmp_path: Path,
    allow_private: None,
    _origins: None,
) -> None:
    port, dimse_port, aet = peers.free_port(), peers.free_port(), unique_aet()
    origin = f"http://127.0.0.1:{port}"
    server = dimse_server(orthanc_dimse, origin, aet, dimse_port)
    config = proxyconfig.render(server, "pacsbin")
    # The proxy's own loader takes it as written (TLS on, ports as given).
    loaded = peers.pacsbin_config_check(pacsbin_proxy_entry, config, tmp_path)
    assert loaded["cors"]["origin"] == [UPLOADER]
    assert loaded["dimseProxySettings"]["peers"][0]["aet"] == orthanc_dimse.aet

    with peers.pacsbin_proxy(pacsbin_proxy_entry, tmp_path, config, port=port):
        # Before the archive knows the proxy: the proxy answers, its C-FIND is
        # refused, and the registry's check says what to register.
        refused = run_check(server, UPLOADER, limits=client.Limits(total_timeout=6))
        assert refused.outcome == "unreachable", refused.findings
        codes = [f["code"] for f in refused.findings]
        assert "proxy_archive_refused" in codes, refused.findings
        message = next(
            f["message"]
            for f in refused.findings
            if f["code"] == "proxy_archive_refused"
        )
        assert f"register the proxy's AE title {aet}" in message
        assert f"DIMSE port {dimse_port}" in message

        # The archive's administrators follow the sheet.
        sheet = " ".join(proxyconfig.pacsbin_view(server).sheet)
        assert f"AE title {aet}" in sheet and f"port {dimse_port}" in sheet
        orthanc_dimse.register_modality(aet, aet, "127.0.0.1", dimse_port)
        try:
            status, headers, body = get(
                f"{origin}/studies?limit=1",
                Origin=UPLOADER,
                Accept="application/dicom+json",
            )
            assert status == 200, body[:500]
            assert headers["Access-Control-Allow-Origin"] == UPLOADER
            assert headers["Content-Type"].startswith("application/dicom+json")
            studies = json.loads(body)
            assert studies[0]["0020000D"]["Value"][0] in orthanc_dimse.study_uids

            # An instance retrieve, found by QIDO as the uploader does.
            study = studies[0]["0020000D"]["Value"][0]
            _s, _h, series = get(f"{origin}/studies/{study}/series", Origin=UPLOADER)
            series_uid = json.loads(series)[0]["0020000E"]["Value"][0]
            _s, _h, instances = get(
                f"{origin}/studies/{study}/series/{series_uid}/instances",
                Origin=UPLOADER,
            )
            sop = json.loads(instances)[0]["00080018"]["Value"][0]
            status, headers, body = get(
                f"{origin}/studies/{study}/series/{series_uid}/instances/{sop}",
                Origin=UPLOADER,
                Accept='multipart/related; type="application/dicom"',
            )
            assert status == 200, body[:500]
            assert headers["Content-Type"].startswith("multipart/related")
            assert headers["Access-Control-Allow-Origin"] == UPLOADER
            assert b"DICM" in body

            # Another origin gets no allow header.
            status, headers, _body = get(f"{origin}/studies?limit=1", Origin=FOREIGN)
            assert "Access-Control-Allow-Origin" not in headers

            # The registry's probe through the proxy: ok, and it says how it
            # retrieved.
            check = run_check(server, UPLOADER)
            assert check.outcome == "ok", check.findings
            wado = next(f for f in check.findings if f["code"] == "wado_ok")
            assert "retrieved one instance instead" in wado["message"]
            assert "no WADO-RS metadata route" in wado["message"]
        finally:
            orthanc_dimse.unregister_modality(aet)


def test_an_archive_onboarded_through_the_public_form(
    orthanc_dimse: peers.Orthanc,
    pacsbin_proxy_entry: Path,
    tmp_path: Path,
    allow_private: None,
    _origins: None,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The journey: a DIMSE archive onboarded on the public form, approved,
    the config.jsonc the API gives run as it is (ports, storage, TLS aside),
    and the uploader's access question answering the proxy's URLs."""
    settings.CACHES = fresh_cache()
    port, dimse_port, aet = peers.free_port(), peers.free_port(), unique_aet()
    origin = f"http://127.0.0.1:{port}"
    web = Client()
    with django_capture_on_commit_callbacks(execute=True):
        answer = web.post(
            "/onboarding/",
            {
                "institution_name": "County General",
                "contact_name": "Pat Admin",
                "contact_email": "pat@county.example",
                "server_name": "County PACS",
                "archive_speaks": "dimse",
                "archive_ae_title": orthanc_dimse.aet,
                "archive_host": "127.0.0.1",
                "archive_port": str(orthanc_dimse.dicom_port),
                "proxy_url": origin,
                "proxy_ae_title": aet,
                "proxy_dimse_port": str(dimse_port),
                "emails": "jane.doe@county.example",
                "leave_blank": "",
            },
        )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    with django_capture_on_commit_callbacks(execute=True):
        web.post(confirmation_path())
    r = OnboardingRequest.objects.get()
    assert r.is_confirmed and r.cors_mode == "dimse_proxy"
    staff = _staff()
    web.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        approved = web.post(
            f"/admin/integrations/onboardingrequest/{r.pk}/approve/",
            {"activate": "on"},
        )
    assert approved.status_code == 302, approved.content.decode()[:2000]
    server = DicomWebServer.objects.get(status="active")
    assert server.qido_url == origin and server.pacsbin_proxy["mode"] == "dimse"

    _key, manage = api_key("ops", scope="manage")
    config = Client().get(
        f"/api/v1/servers/{server.pk}/proxy-config/pacsbin", **key_header(manage)
    )
    assert config.status_code == 200
    # The contact's status page offers the very same file, with Copy.
    page = web.get(f"/onboarding/status/{status_link(r)}/").content.decode()
    shown = re.search(r'<pre id="pacsbin-config"[^>]*>(.*?)</pre>', page, re.DOTALL)
    assert shown and html.unescape(shown.group(1)) == config.content.decode()
    orthanc_dimse.register_modality(aet, aet, "127.0.0.1", dimse_port)
    try:
        # Run exactly as given: an http origin needs no certificate, and the
        # storage folder is relative to where the proxy runs.
        with peers.pacsbin_proxy(
            pacsbin_proxy_entry,
            tmp_path,
            config.content.decode(),
            port=port,
            unchanged=True,
        ):
            _key, access = api_key("uploader")
            servers = (
                Client()
                .get(
                    "/api/v1/access?email=jane.doe@county.example", **key_header(access)
                )
                .json()["servers"]
            )
            assert [(s["qido_url"], s["wado_url"]) for s in servers] == [
                (origin, origin)
            ]
            status, headers, body = get(
                f"{servers[0]['qido_url']}/studies?limit=1", Origin=UPLOADER
            )
            assert status == 200 and json.loads(body)
            assert headers["Access-Control-Allow-Origin"] == UPLOADER
    finally:
        orthanc_dimse.unregister_modality(aet)


def _staff() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("reviewer", "r@example.org", "pw")


ROOT_NGINX = """
server {{
    listen 443 ssl;
    server_name archive.example;
    location / {{
        proxy_pass {orthanc}/dicom-web/;
    }}
}}
"""


def test_dicomweb_mode_works_where_the_archive_root_is_at_slash(
    orthanc: peers.Orthanc,
    pacsbin_proxy_entry: Path,
    tmp_path: Path,
    allow_private: None,
    _origins: None,
) -> None:
    with peers.nginx(tmp_path, ROOT_NGINX.format(orthanc=orthanc.url)) as archive:
        port = peers.free_port()
        origin = f"http://127.0.0.1:{port}"
        server = make_server(
            make_institution("Forwarded"),
            "Root archive",
            qido_url=origin,
            wado_url=origin,
            cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
            pacsbin_proxy={
                "mode": "dicomweb",
                "forward_qido_url": archive,
                "forward_wado_url": archive,
            },
        )
        server.full_clean()
        config = proxyconfig.render(server, "pacsbin")
        with peers.pacsbin_proxy(pacsbin_proxy_entry, tmp_path, config, port=port):
            status, headers, body = get(
                f"{origin}/studies?limit=1",
                Origin=UPLOADER,
                Accept="application/dicom+json",
            )
            assert status == 200, body[:300]
            assert headers["Access-Control-Allow-Origin"] == UPLOADER
            assert json.loads(body)[0]["0020000D"]["Value"][0] in orthanc.study_uids
            _s, foreign, _b = get(f"{origin}/studies?limit=1", Origin=FOREIGN)
            assert "Access-Control-Allow-Origin" not in foreign


def test_dicomweb_mode_is_refused_in_plain_words_where_the_root_has_a_path(
    orthanc: peers.Orthanc, _origins: None
) -> None:
    server = make_server(
        make_institution("Forwarded"),
        "Path archive",
        qido_url="https://proxy.hospital.example",
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy={
            "mode": "dicomweb",
            "forward_qido_url": orthanc.dicomweb,
            "forward_wado_url": orthanc.dicomweb,
        },
    )
    with pytest.raises(proxyconfig.ConfigRefused) as refused:
        proxyconfig.render(server, "pacsbin")
    message = str(refused.value)
    assert "drops the path" in message and orthanc.dicomweb in message
    assert "dimse mode" in message and "nginx" in message
    # The pages offer the reverse proxies that keep the path instead.
    view = proxyconfig.pacsbin_view(server)
    assert [kind for kind, _text in view.alternatives] == list(proxyconfig.KINDS)
    assert "/dicom-web/" in dict(view.alternatives)["nginx"]
