"""OHIF Viewer through the gate, in Debian's Chromium (DESIGN.md "The gate").

The pinned @ohif/app package (tests/peers.py ``ohif_package``: 3.13.2, its
built ``dist/``) is served from an origin of its own, with an
``app-config.js`` whose ``dataSources`` is exactly the registry's
``GET /api/v1/access?email=…&format=ohif`` answer (asked with an access-scope
key of the served registry). Its one data source is a server behind the
gate: a real nginx running the configuration ``POST …/edge-key`` answered
(changed only in port and cache folder), in front of a real Orthanc holding
a study with real pixels.

How OHIF 3.13.2 sends the token (read in its dist/app.bundle.*.js): the mode
route reads ``lowerCaseSearchParams.get('token')`` from the viewer URL and
calls ``updateAuthServiceAndCleanUrl(token, …)``, which sets
``userAuthenticationService.getAuthorizationHeader`` to
``{Authorization: 'Bearer ' + token}``; the DICOMweb data source
(extension-default) puts that header on every QIDO and WADO request.
``test_ohifs_own_code_turns_the_url_token_into_the_header`` pins that.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import peers, served
from tests.test_edge_peers import Registry, registry_env, request, start_nginx

pytestmark = [pytest.mark.browser, pytest.mark.peers]

EMAIL = "reader@hospital.example"
# OHIF is a big single-page application: its first load in a busy shared
# machine's headless Chromium takes tens of seconds.
LOAD_SECONDS = 90
SIZE = 64  # the study's image: SIZE x SIZE, 8-bit


def renderable_instance(study_uid: str, series_uid: str) -> bytes:
    """tests/peers.py's instance with an image worth looking at: a diagonal
    gradient, every pixel distinct from its background."""
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(peers.dicom_instance(study_uid, series_uid, 1)))
    dataset.Rows = dataset.Columns = SIZE
    dataset.PixelData = bytes(
        (x + y) * 255 // (2 * SIZE - 2) for y in range(SIZE) for x in range(SIZE)
    )
    dataset.StudyDescription = "Gate OHIF fixture"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store(orthanc: peers.Orthanc, instance: bytes) -> None:
    import urllib.request

    sent = urllib.request.Request(
        f"{orthanc.url}/instances",
        data=instance,
        headers={"Content-Type": "application/dicom"},
        method="POST",
    )
    with urllib.request.urlopen(sent, timeout=10) as answer:
        assert answer.status == 200


class _ViewerFiles(SimpleHTTPRequestHandler):
    """OHIF's dist/ with the test's app-config.js, and index.html for every
    path that is no file (OHIF routes /viewer, /notfoundstudy… itself)."""

    app_config = b""

    def send_head(self) -> Any:
        path = urlsplit(self.path).path
        if path == "/app-config.js":
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(self.app_config)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return io.BytesIO(self.app_config)
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def viewer_origin(dist: Path, port: int, app_config: str) -> Iterator[str]:
    """OHIF's files on http://127.0.0.1:port (a thread of this process)."""
    handler = type("ViewerFiles", (_ViewerFiles,), {"app_config": app_config.encode()})
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", port), partial(handler, directory=str(dist))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def app_config(answer: dict[str, Any]) -> str:
    """OHIF's window.config, its data sources exactly the registry's."""
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 1,
        "showLoadingIndicator": True,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": answer["defaultDataSourceName"],
        "dataSources": answer["dataSources"],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


@dataclass
class Gate:
    viewer: str  # OHIF's origin
    study_uid: str
    source: dict[str, Any]  # the registry's OHIF data source for the server
    token: str
    edge: str  # nginx's base URL
    access_log: Path
    answer: dict[str, Any] = field(default_factory=dict)  # the whole answer


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    peers.require(peers.CHROMIUM, peers.NGINX)
    dist = peers.ohif_package() / "dist"
    tmp = tmp_path_factory.mktemp("edge-ohif")
    viewer_port = peers.free_port()
    viewer = f"http://127.0.0.1:{viewer_port}"
    with ExitStack() as stack:
        (tmp / "orthanc").mkdir()
        orthanc = stack.enter_context(peers.orthanc(tmp / "orthanc"))
        from pydicom.uid import generate_uid

        study_uid = generate_uid()
        store(orthanc, renderable_instance(study_uid, generate_uid()))

        # The registry allows OHIF's origin (the generated CORS list comes
        # from UPLOADER_ORIGINS), its public origin a second listener.
        registry_port = peers.free_port()
        origin = f"http://127.0.0.1:{registry_port}"
        site = stack.enter_context(
            served.served(
                tmp,
                "edge_ohif",
                postgres_url=served.suite_postgres_url(),
                gunicorn_args=("--bind", f"127.0.0.1:{registry_port}"),
                **registry_env(origin, UPLOADER_ORIGINS=viewer),
            )
        )
        registry = Registry(site, origin, 0)
        found = registry.api("GET", f"/servers/{site.server_id}/")
        registry.institution = int(json.loads(found.body)["institution"])
        server = registry.enforced_server(orthanc.dicomweb, "Gated PACS")
        configs = registry.edge_key(server)["configs"]
        assert f"{viewer}" in configs["nginx"]
        edge = start_nginx(stack, tmp / "nginx", configs["nginx"])
        # As the configuration's step 3 says: the registry now names the
        # proxy's URLs, which OHIF gets in its data source.
        moved = registry.api(
            "PATCH",
            f"/servers/{server}/",
            {"qido_url": f"{edge}/dicom-web", "wado_url": f"{edge}/dicom-web"},
        )
        assert moved.status == 200, moved.body
        registry.approve(server, EMAIL)

        env = served.base_env(**site.database)
        printed = served.manage(
            env, "create_api_key", "ohif-viewer", "--scope", "access"
        )
        access_key = printed.strip().splitlines()[-1]
        asked = request(
            f"{site.url}/api/v1/access?email={EMAIL}&format=ohif",
            headers={"Authorization": f"Api-Key {access_key}"},
        )
        assert asked.status == 200, asked.body
        answer = json.loads(asked.body)
        [source] = answer["dataSources"]
        assert source["configuration"]["qidoRoot"] == f"{edge}/dicom-web"
        assert answer["defaultDataSourceName"] == source["sourceName"]
        token = parse_qs(source["viewerQuery"])["token"][0]
        assert token == source["accessToken"]

        stack.enter_context(viewer_origin(dist, viewer_port, app_config(answer)))
        yield Gate(
            viewer=viewer,
            study_uid=study_uid,
            source=source,
            token=token,
            edge=edge,
            access_log=tmp / "nginx" / "nginx" / "logs" / "access.log",
            answer=answer,
        )


@dataclass
class Seen:
    """What Chromium did on the page: the requests to the edge with their
    Authorization header and status, and every console error."""

    archive: list[tuple[str, str, str | None, int | None]] = field(
        default_factory=list
    )  # method, URL, Authorization, status
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{m} {u} auth={bool(a)} -> {s}" for m, u, a, s in self.archive]
        return (
            "requests to the edge:\n  "
            + "\n  ".join(lines[-40:] or ["(none)"])
            + "\nconsole errors:\n  "
            + "\n  ".join(self.console[-30:] or ["(none)"])
            + "\nfailed requests:\n  "
            + "\n  ".join(self.failed[-20:] or ["(none)"])
        )

    def answered(self, status: int) -> list[str]:
        return [u for m, u, _a, s in self.archive if m == "GET" and s == status]


# The cornerstone viewport's canvas: how many distinct grey levels it shows
# (-1: no canvas yet). A blank viewport has one, text overlays a handful; the
# study's gradient, stretched over the viewport, well over a hundred.
GREY_LEVELS = """() => {
  const canvas = document.querySelector('canvas.cornerstone-canvas');
  if (!canvas || !canvas.width || !canvas.height) return -1;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  if (!context) return -1;
  const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === data[i + 1] && data[i + 1] === data[i + 2]) levels.add(data[i]);
  }
  return levels.size;
}"""
# The gradient's 2 x SIZE - 1 values, less what windowing may merge.
RENDERED_LEVELS = SIZE


@contextmanager
def viewer_page(gate: Gate, url: str) -> Iterator[tuple[Any, Seen]]:
    """Chromium on ``url``, every request to the edge and console error
    recorded into Seen."""
    from playwright.sync_api import sync_playwright

    seen = Seen()
    by_request: dict[Any, int] = {}

    def sent(req: Any) -> None:
        if req.url.startswith(gate.edge):
            auth = req.headers.get("authorization")
            by_request[req] = len(seen.archive)
            seen.archive.append((req.method, req.url, auth, None))

    def answered(response: Any) -> None:
        index = by_request.get(response.request)
        if index is not None:
            method, address, auth, _ = seen.archive[index]
            seen.archive[index] = (method, address, auth, response.status)

    with sync_playwright() as playwright:
        browser = peers.launch_chromium(playwright)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, service_workers="block"
            )
            page = context.new_page()
            page.set_default_timeout(LOAD_SECONDS * 1000)
            page.on(
                "console",
                lambda m: seen.console.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: seen.console.append(f"page error: {e}"))
            page.on("request", sent)
            page.on("response", answered)
            page.on(
                "requestfailed",
                lambda r: seen.failed.append(f"{r.url}: {r.failure}"),
            )
            page.goto(url, wait_until="domcontentloaded")
            yield page, seen
        finally:
            browser.close()


def viewer_url(gate: Gate, *, with_token: bool) -> str:
    query = gate.source["viewerQuery"]
    if not with_token:
        query = re.sub(r"(^|&)token=[^&]*", "", query)
    return f"{gate.viewer}/viewer?StudyInstanceUIDs={gate.study_uid}&{query}"


def test_ohifs_own_code_turns_the_url_token_into_the_header() -> None:
    dist = peers.ohif_package() / "dist"
    [app] = dist.glob("app.bundle.*.js")
    code = app.read_text(encoding="utf-8", errors="replace")
    assert "const token = lowerCaseSearchParams.get('token');" in code
    update = peers.ohif_function(peers.ohif_package(), "updateAuthServiceAndCleanUrl")
    assert "Authorization: 'Bearer ' + token" in update
    assert "searchParams.delete('token')" in update  # not left in the URL


def test_ohif_renders_the_study_through_the_gate_with_the_registry_token(
    gate: Gate,
) -> None:
    with viewer_page(gate, viewer_url(gate, with_token=True)) as (page, seen):
        try:
            page.wait_for_function(
                f"({GREY_LEVELS})() >= {RENDERED_LEVELS}", timeout=LOAD_SECONDS * 1000
            )
        except Exception as exc:
            page.screenshot(path=str(gate.access_log.parent / "ohif-token.png"))
            pytest.fail(f"OHIF rendered nothing ({exc}):\n{seen.report()}")
        # OHIF took the token out of its address bar once it had it.
        assert "token=" not in page.url, page.url
        # The study's metadata: its date (StudyDate 20260101) on the
        # viewport's overlay and in the study browser.
        shown = page.get_by_text("01-Jan-2026", exact=True).count()
        text = page.inner_text("body")
    assert shown >= 2, f"no study metadata on the page:\n{text}\n{seen.report()}"
    gets = [(u, a, s) for m, u, a, s in seen.archive if m == "GET"]
    # QIDO (the study search OHIF validates the study with) and WADO (the
    # metadata and the pixels), each with the registry's token, granted.
    qido = [g for g in gets if re.search(r"/dicom-web/studies\?", g[0])]
    wado = [g for g in gets if re.search(r"/(metadata|frames/\d+)", g[0])]
    assert qido and wado, seen.report()
    for address, auth, status in qido + wado:
        assert auth == f"Bearer {gate.token}", (address, auth)
        assert status == 200, (address, status, seen.report())
    assert any("/frames/" in address for address, _, _ in wado), seen.report()
    # And nginx says so in its own log.
    log = gate.access_log.read_text()
    assert re.search(r'"GET /dicom-web/studies\?[^"]*" 200 ', log), log[-3000:]
    assert re.search(r'"GET /dicom-web/studies/[^"]*/frames/[^"]*" 200 ', log), log[
        -3000:
    ]


def test_without_the_token_the_edge_answers_401_and_nothing_renders(
    gate: Gate,
) -> None:
    before = gate.access_log.read_text() if gate.access_log.exists() else ""
    with viewer_page(gate, viewer_url(gate, with_token=False)) as (page, seen):
        try:
            page.wait_for_function(
                "() => location.pathname !== '/viewer'"
                " || document.querySelector('canvas.cornerstone-canvas')",
                timeout=LOAD_SECONDS * 1000,
            )
            # Give a late render every chance to show up.
            page.wait_for_timeout(5000)
        except Exception as exc:
            pytest.fail(f"OHIF never settled ({exc}):\n{seen.report()}")
        levels = page.evaluate(GREY_LEVELS)
    assert levels < RENDERED_LEVELS, (
        f"{levels} grey levels without a token\n{seen.report()}"
    )
    gets = [(u, a, s) for m, u, a, s in seen.archive if m == "GET"]
    assert gets, seen.report()
    for address, auth, status in gets:
        assert auth is None, (address, auth)
        assert status == 401, (address, status, seen.report())
    log = gate.access_log.read_text()[len(before) :]
    assert re.search(r'"GET /dicom-web/studies\?[^"]*" 401 ', log), log[-3000:]
    assert not re.search(r'"GET /dicom-web/[^"]*" 200 ', log), log[-3000:]


def test_the_viewer_gets_the_registrys_answer_as_its_data_sources(
    gate: Gate,
) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{gate.viewer}/app-config.js", timeout=10) as got:
        served_config = got.read().decode()
    config = json.loads(served_config.removeprefix("window.config = ").rstrip(";\n"))
    assert config["dataSources"] == gate.answer["dataSources"]
    assert config["defaultDataSourceName"] == gate.source["sourceName"]
    # OHIF's routes are index.html (the SPA fallback), its files themselves.
    with urllib.request.urlopen(f"{gate.viewer}/viewer?x=1", timeout=10) as got:
        assert b"app-config.js" in got.read()
