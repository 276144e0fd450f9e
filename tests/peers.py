"""Real peers for the tests: Orthanc with its DICOMweb plugin, nginx, Apache.

Each is started on a free loopback port with its files in a temporary folder
and stopped at teardown. Without CI a missing binary skips the test; with CI
set it fails it, so CI can never pass by skipping.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
NGINX = "/usr/sbin/nginx"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
CADDY = "/usr/bin/caddy"
CHROMIUM = "/usr/bin/chromium"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
NODE = "/usr/bin/node"
NPM = "/usr/bin/npm"
# Pacsbin's proxy, as published: ../shared/peers from the project root (never
# copied into the project), or PACSBIN_PROXY_SOURCE; a clone made elsewhere
# looks beside the checkout it was cloned from. Built once per source version
# into a cache folder.
_PROXY_FOLDER = Path("shared") / "peers" / "pacsbin-dicomweb-proxy"


def _pacsbin_proxy_source() -> Path:
    given = os.environ.get("PACSBIN_PROXY_SOURCE")
    if given:
        return Path(given)
    root = Path(__file__).resolve().parent.parent
    beside = root.parent / _PROXY_FOLDER
    if beside.exists():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / _PROXY_FOLDER
        if cloned_from.exists():
            return cloned_from
    return beside  # missing: require() names it


PACSBIN_PROXY_SOURCE = _pacsbin_proxy_source()


def require(*paths: str) -> None:
    """Skip (or fail, under CI) when a tool the test needs is missing."""
    missing = [p for p in paths if not os.path.exists(p)]
    if not missing:
        return
    message = f"missing {', '.join(missing)} (apt-get install it; .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# Headless, no sandbox (root), and no background traffic: this machine has no
# network but loopback, and Chromium must never fetch anything of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is one it also gives to outgoing
    connections: between choosing it and a peer binding it (gunicorn after
    its migrations, seconds later), a database or Redis client may take it
    as its own end, and the peer fails with "Address already in use"."""
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        port = random.randrange(20000, 32768)
        if port in ephemeral or port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)  # not twice to this process's own peers
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    url: str, process: subprocess.Popen, log: Path, seconds: float = 20
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers: an error status is still an answer
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@contextmanager
def running(
    args: list[str], log: Path, ready_url: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_for(ready_url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Orthanc:
    url: str  # http://127.0.0.1:PORT
    study_uids: list[str]
    dicom_port: int | None = None  # its DIMSE port, when opened
    aet: str = "ORTHANC"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def register_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Let a DICOM node (Pacsbin's proxy) query and retrieve:
        ``PUT /modalities/NAME``, as an archive's administrator would."""
        body = json.dumps({"AET": aet, "Host": host, "Port": port}).encode()
        request = urllib.request.Request(
            f"{self.url}/modalities/{name}", data=body, method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def unregister_modality(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/modalities/{name}", method="DELETE"
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def dicom_instance(study_uid: str, series_uid: str, number: int) -> bytes:
    """A small Secondary Capture instance (pydicom), as Orthanc accepts it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "Test^Connectivity"
    ds.PatientID = "PACSBIN-TEST-1"
    ds.StudyDate = "20260101"
    ds.StudyDescription = "Connectivity check fixture"
    ds.Modality = "OT"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(16))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@contextmanager
def orthanc(tmp: Path, *, dicom: bool = False) -> Iterator[Orthanc]:
    """Orthanc with DICOMweb on a free port, holding two small studies; with
    ``dicom``, its DIMSE port open too (on a free port, AE title ORTHANC),
    answering only the modalities registered with ``register_modality``."""
    require(ORTHANC, DICOMWEB_PLUGIN)
    from pydicom.uid import generate_uid

    port = free_port()
    dicom_port = free_port() if dicom else None
    (tmp / "storage").mkdir()
    config = {
        "Name": "pacsbin-test",
        "HttpPort": port,
        "HttpBindAddress": "127.0.0.1",  # not every Orthanc knows it; harmless
        "DicomServerEnabled": dicom,
        **(
            {
                "DicomPort": dicom_port,
                "DicomAet": "ORTHANC",
                "DicomModalities": {},
                # Modalities added over REST are kept in the index (1.10 does
                # it anyway; older ones need this).
                "DicomModalitiesInDatabase": True,
            }
            if dicom
            else {}
        ),
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "StorageDirectory": str(tmp / "storage"),
        "IndexDirectory": str(tmp / "storage"),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (tmp / "orthanc.json").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{port}"
    with running(
        [ORTHANC, str(tmp / "orthanc.json")], tmp / "orthanc.log", f"{url}/system"
    ):
        study_uids = [generate_uid(), generate_uid()]
        for study_uid in study_uids:
            series_uid = generate_uid()
            for number in (1, 2):
                request = urllib.request.Request(
                    f"{url}/instances",
                    data=dicom_instance(study_uid, series_uid, number),
                    headers={"Content-Type": "application/dicom"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=10) as answer:
                    assert answer.status == 200
        yield Orthanc(url=url, study_uids=study_uids, dicom_port=dicom_port)


def require_node() -> None:
    """node and npm build and run Pacsbin's proxy: missing, the test skips
    (fails under CI)."""
    require(NODE, NPM, str(PACSBIN_PROXY_SOURCE / "build.sh"))


def build_pacsbin_proxy(cache: Path | None = None) -> Path:
    """Build Pacsbin's proxy with its own build.sh (once per source version:
    the output folder is named after a hash of the sources, and a lock keeps
    parallel runs from building into it at once); the entry point."""
    import fcntl
    import hashlib

    require_node()
    digest = hashlib.sha256()
    for path in sorted(PACSBIN_PROXY_SOURCE.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(PACSBIN_PROXY_SOURCE)).encode())
            digest.update(path.read_bytes())
    base = cache_folder(cache)
    out = base / f"pacsbin-dicomweb-proxy-{digest.hexdigest()[:16]}"
    with (base / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = subprocess.run(
            [str(PACSBIN_PROXY_SOURCE / "build.sh"), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert built.returncode == 0, built.stderr[-3000:]
    entry = Path(built.stdout.strip().splitlines()[-1])
    assert entry.is_file(), built.stdout
    return entry


def cache_folder(cache: Path | None = None) -> Path:
    """Where built and fetched peers are kept between runs."""
    base = (
        cache
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "pacsbin-integrations-tests"
    )
    base.mkdir(parents=True, exist_ok=True)
    return base


# OHIF Viewer as published on npm, pinned by version and by the registry's
# integrity hash (`npm view @ohif/app@3.13.2 dist.integrity`). The test's
# one download: ohif_package() fetches it once into the cache folder, and
# .ci/run calls it before the tests.
OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
OHIF_INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq"
    "+jd5xXZB9E8EA=="
)


def ohif_package(cache: Path | None = None) -> Path:
    """The unpacked @ohif/app package (``package.json`` and the built viewer
    in ``dist/``), fetched with ``npm pack`` the first time (a lock keeps
    parallel runs from fetching at once; the folder appears whole or not at
    all). Missing npm, or a failed fetch: the test skips (fails under CI)."""
    import base64
    import fcntl
    import hashlib
    import shutil
    import tarfile
    import tempfile

    base = cache_folder(cache)
    folder = base / f"ohif-app-{OHIF_VERSION}"
    if (folder / "package" / "dist").is_dir():
        return folder / "package"
    require(NPM)
    with (base / "ohif.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "package" / "dist").is_dir():
            return folder / "package"
        work = Path(tempfile.mkdtemp(prefix="ohif-", dir=base))
        try:
            packed = subprocess.run(
                [NPM, "pack", f"{OHIF_PACKAGE}@{OHIF_VERSION}", "--json"]
                + ["--pack-destination", str(work)],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=work,
            )
            if packed.returncode != 0:
                message = f"npm pack {OHIF_PACKAGE}@{OHIF_VERSION} failed:\n"
                message += packed.stderr[-2000:]
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
            [tarball] = work.glob("*.tgz")
            algorithm, expected = OHIF_INTEGRITY.split("-", 1)
            digest = hashlib.new(algorithm, tarball.read_bytes()).digest()
            assert base64.b64encode(digest).decode() == expected, (
                f"{tarball.name} is not the pinned {OHIF_PACKAGE}@{OHIF_VERSION}"
            )
            with tarfile.open(tarball) as archive:
                archive.extractall(work / "unpacked", filter="data")
            (work / "unpacked").rename(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder / "package"


# OHIF's own functions that build the requests the registry's flags change,
# read from the package's built code and run with node: thumbnails
# (thumbnailRendering + thumbnailRequestStrategy fetch), the WADO-RS frame
# a wadors thumbnail and the viewer load, and the study list's QIDO search
# (supportsWildcard, supportsFuzzyMatching) as dicomweb-client escapes it.
OHIF_FUNCTIONS = (
    "buildThumbnailEndpointPath",
    "getThumbnailFetchRequest",
    "buildInstanceWadoRsUri",
    "buildInstanceFrameWadoRsUri",
    "getWADORSImageId",
    "mapParams",
    "_parseQueryParameters",
)


@functools.cache
def ohif_function(package: Path, name: str) -> str:
    """The source of ``function name(...) {...}`` in the package's dist/
    JavaScript (the first bundle defining it)."""
    pattern = re.compile(rf"\bfunction {re.escape(name)}\(")
    for path in sorted((package / "dist").glob("*.js")):
        text = path.read_text(encoding="utf-8", errors="replace")
        found = pattern.search(text)
        if found is None:
            continue
        start = found.start()
        at = _closing(text, found.end() - 1, "(", ")")
        body = text.index("{", at)
        return text[start : _closing(text, body, "{", "}") + 1]
    raise AssertionError(f"OHIF {OHIF_VERSION}'s dist/ has no function {name}")


def _closing(text: str, at: int, opening: str, closing: str) -> int:
    """The index of the bracket closing the one at ``at`` (the functions read
    here hold no bracket inside a string)."""
    depth = 0
    for index in range(at, len(text)):
        if text[index] == opening:
            depth += 1
        elif text[index] == closing:
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError(f"unbalanced {opening} at {at}")


def ohif_run(package: Path, expression: str, tmp: Path) -> Any:
    """Evaluate a JavaScript expression with OHIF_FUNCTIONS defined (node);
    its JSON value."""
    require(NODE)
    sources = "\n".join(ohif_function(package, name) for name in OHIF_FUNCTIONS)
    script = tmp / "ohif-run.js"
    script.write_text(
        f"{sources}\nprocess.stdout.write(JSON.stringify({expression}));\n"
    )
    ran = subprocess.run(
        [NODE, str(script)], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout)


def patch_pacsbin_config(
    config: str, *, web_port: int, storage: Path, dimse_port: int | None = None
) -> str:
    """The generated config.jsonc with only the ports, the storage folder
    and TLS changed, for a loopback test (plain HTTP on ``web_port``)."""
    config, found = re.subn(
        r'"webserverPort": \d+,', f'"webserverPort": {web_port},', config
    )
    assert found == 1, config
    config, found = re.subn(
        r'"storagePath": "[^"\n]*",',
        f'"storagePath": {json.dumps(str(storage))},',
        config,
    )
    assert found == 1, config
    config = config.replace('"enabled": true,', '"enabled": false,')
    config = config.replace('"redirectHttp": true', '"redirectHttp": false')
    if dimse_port is not None:
        config = re.sub(
            r'("proxyServer": \{[^}]*"port": )\d+', rf"\g<1>{dimse_port}", config
        )
    return config


def pacsbin_config_check(entry: Path, config: str, tmp: Path) -> dict[str, Any]:
    """The proxy's own loader (JSONC parser and validator) on ``config``: the
    settings it would run with, or AssertionError with its message."""
    path = tmp / "check-config.jsonc"
    path.write_text(config)
    loader = entry.parent / "config" / "config.js"
    script = (
        f"const {{ConfigManager}} = require({json.dumps(str(loader))});"
        f"const m = new ConfigManager({json.dumps(str(path))});"
        "process.stdout.write(JSON.stringify(m.getConfig()));"
    )
    checked = subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    return json.loads(checked.stdout)


@contextmanager
def pacsbin_proxy(
    entry: Path,
    tmp: Path,
    config: str,
    *,
    port: int | None = None,
    dimse_port: int | None = None,
    unchanged: bool = False,
) -> Iterator[str]:
    """Pacsbin's proxy running the (patched) generated config on ``port`` (a
    free loopback port by default); yields its base URL. ``unchanged``: the
    config exactly as given (its origin must then be http://127.0.0.1:port),
    run from ``tmp`` as an operator would."""
    port = port or free_port()
    (tmp / "proxy-data").mkdir(exist_ok=True)
    path = tmp / "config.jsonc"
    path.write_text(
        config
        if unchanged
        else patch_pacsbin_config(
            config, web_port=port, storage=tmp / "proxy-data", dimse_port=dimse_port
        )
    )
    url = f"http://127.0.0.1:{port}"
    with running(
        [NODE, str(entry), str(path)], tmp / "proxy.log", f"{url}/ping", cwd=tmp
    ):
        yield url


def self_signed_certificate(tmp: Path, name: str = "localhost") -> tuple[Path, Path]:
    cert, key = tmp / "proxy.pem", tmp / "proxy.key"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"]
            + ["-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
    return cert, key


def patch_nginx(config: str, port: int, cert: Path, key: Path, tls: bool) -> str:
    """The generated configuration with only the listen lines and the
    certificate paths changed, for a loopback test."""
    listen = f"listen 127.0.0.1:{port}{' ssl' if tls else ''};"
    config = re.sub(r"listen 443 ssl;", listen, config, count=1)
    config = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", config)
    config = re.sub(r"ssl_certificate \S+;", f"ssl_certificate {cert};", config)
    return re.sub(r"ssl_certificate_key \S+;", f"ssl_certificate_key {key};", config)


def patch_edge_cache(config: str) -> str:
    """The gate's decision cache in a folder of its own (the generated path
    is under /var/cache, for a real install): the one line the configuration
    marks EDIT for it. Outside pytest's temporary folders: nginx's workers
    (nobody) must reach it, and every pytest session that starts makes
    /tmp/pytest-of-<user> private again. Removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="pacsbin-edge-cache-"))
    folder.chmod(0o711)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config, found = re.subn(
        r"^proxy_cache_path \S+ ",
        f"proxy_cache_path {folder / 'cache'} ",
        config,
        flags=re.MULTILINE,
    )
    assert found == 1, config
    return config


@contextmanager
def nginx(tmp: Path, site: str, *, tls: bool = False) -> Iterator[str]:
    """nginx serving the (patched) site configuration; yields its base URL."""
    require(NGINX)
    port = free_port()
    cert, key = self_signed_certificate(tmp)
    prefix = tmp / "nginx"
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    main = nginx_main(prefix, site, port, cert, key, tls)
    (prefix / "nginx.conf").write_text(main)
    test = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stderr
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    args = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    args += ["-g", "daemon off;"]
    ready = f"http://127.0.0.1:{port}/" if not tls else None
    if ready is None:
        with _started(args, prefix / "logs" / "stdout.log", port):
            yield url
        return
    with running(args, prefix / "logs" / "stdout.log", ready):
        yield url


def nginx_syntax(tmp: Path, site: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on the (patched) site configuration, nothing started."""
    require(NGINX)
    cert, key = self_signed_certificate(tmp)
    prefix = tmp / "nginx-t"
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(nginx_main(prefix, site, free_port(), cert, key, tls=True))
    return subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(config)],
        capture_output=True,
        text=True,
    )


def nginx_main(
    prefix: Path, site: str, port: int, cert: Path, key: Path, tls: bool
) -> str:
    temp = prefix / "temp"
    return f"""
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    {patch_nginx(site, port, cert, key, tls)}
}}
"""


@contextmanager
def _started(args: list[str], log: Path, port: int) -> Iterator[None]:
    """For a TLS listener: ready when the port accepts connections."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"nginx did not start:\n{_tail(log)}") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def apache_main_config(tmp: Path, site: str, port: int) -> Path:
    """A minimal Apache main configuration around a (patched) site."""
    cert, key = self_signed_certificate(tmp)
    root = tmp / "apache"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("unixd_module", "mod_unixd.so"),
        ("ssl_module", "mod_ssl.so"),
        ("proxy_module", "mod_proxy.so"),
        ("proxy_http_module", "mod_proxy_http.so"),
        ("headers_module", "mod_headers.so"),
        ("rewrite_module", "mod_rewrite.so"),
        ("setenvif_module", "mod_setenvif.so"),
    ]
    loads = "\n".join(
        f"LoadModule {name} {APACHE_MODULES / so}"
        for name, so in modules
        if (APACHE_MODULES / so).exists() or name != "unixd_module"
    )
    site = site.replace("<VirtualHost *:443>", f"<VirtualHost 127.0.0.1:{port}>")
    site = re.sub(r"SSLEngine on", "SSLEngine off", site)
    site = re.sub(r"SSLCertificateFile \S+", f"SSLCertificateFile {cert}", site)
    site = re.sub(r"SSLCertificateKeyFile \S+", f"SSLCertificateKeyFile {key}", site)
    main = root / "apache2.conf"
    main.write_text(
        f"""ServerRoot {root}
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {root}/apache.pid
ErrorLog {root}/logs/error.log
Mutex file:{root}
DefaultRuntimeDir {root}
{loads}
{site}
"""
    )
    return main


def caddy_env(tmp: Path) -> dict[str, str]:
    """Caddy keeps its state under HOME / XDG: a throwaway folder."""
    return {
        "HOME": str(tmp),
        "XDG_DATA_HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


@contextmanager
def caddy(tmp: Path, site: str) -> Iterator[str]:
    """Caddy serving the site block on a loopback port, plain HTTP, without its
    admin endpoint (so parallel runs never collide); yields its base URL."""
    require(CADDY)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = re.sub(r"^\S+ \{$", f"{url} {{", site, count=1, flags=re.MULTILINE)
    config = tmp / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
    args = [CADDY, "run", "--adapter", "caddyfile", "--config", str(config)]
    log = tmp / "caddy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=caddy_env(tmp)
        )
    try:
        wait_for(f"{url}/", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def caddy_validate(config: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``caddy validate`` of a Caddyfile holding ``config``."""
    path = tmp / "Caddyfile"
    path.write_text(config)
    return subprocess.run(
        [CADDY, "validate", "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True,
        text=True,
        env=caddy_env(tmp),
    )


# A certified OpenID provider for the single sign-on tests, from npm.
OIDC_PROVIDER_VERSION = "8.8.1"
OIDC_PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"


def install_oidc_provider(cache: Path | None = None) -> Path:
    """``npm install oidc-provider`` once per version into a cache folder (.ci/run
    calls this before the tests, so nothing downloads while they run); the
    folder holding its node_modules."""
    import fcntl

    require(NODE, NPM)
    base = (
        cache
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "pacsbin-integrations-tests"
    )
    base.mkdir(parents=True, exist_ok=True)
    out = base / f"oidc-provider-{OIDC_PROVIDER_VERSION}"
    with (base / "oidc-provider.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "node_modules" / "oidc-provider" / "package.json").exists():
            out.mkdir(exist_ok=True)
            installed = subprocess.run(
                [NPM, "install", "--no-audit", "--no-fund", "--omit=dev"]
                + ["--prefix", str(out), f"oidc-provider@{OIDC_PROVIDER_VERSION}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert installed.returncode == 0, installed.stderr[-3000:]
    return out


@contextmanager
def oidc_provider(
    tmp: Path, *, client_id: str, client_secret: str, redirect_uri: str
) -> Iterator[str]:
    """tests/oidc_provider.mjs on a free loopback port; yields its issuer URL."""
    folder = install_oidc_provider()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    script = folder / "oidc_provider.mjs"  # beside node_modules, for its imports
    script.write_text(OIDC_PROVIDER_SCRIPT.read_text())
    args = [NODE, str(script), str(port), client_id, client_secret, redirect_uri]
    with running(
        args, tmp / "oidc-provider.log", f"{issuer}/.well-known/openid-configuration"
    ):
        yield issuer
