"""Pacsbin's own proxy: its ``config.jsonc`` and the archive's side of it.

The proxy (``../shared/peers/pacsbin-dicomweb-proxy``, facts in its NOTICE.md)
serves DICOMweb at the root of its own origin. In ``dimse`` mode it asks a
DIMSE-only archive by C-FIND and C-GET (or C-MOVE); in ``dicomweb`` mode it
forwards to a DICOMweb archive, dropping the forwarding URL's path, so it only
works for an archive whose DICOMweb root is at ``/``.

Every value is written with ``json.dumps`` (ASCII only: quotes, backslashes,
line breaks and any other character escaped), comments go through
``printable`` (one line) and are ``//`` line comments, so whatever a name
or a value holds, the file keeps its shape. The registry's server row is the
only input; nothing here touches the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError

from integrations.validators import (
    PROXY_MODE_DICOMWEB,
    PROXY_MODE_DIMSE,
    UrlParts,
    normalize_pacsbin_proxy,
    printable,
    proxy_error_messages,
    split_dicomweb_url,
)

if TYPE_CHECKING:
    from integrations.models import DicomWebServer

KIND = "pacsbin"
# The proxy's defaults, kept where an operator expects them (its installer
# uses /opt/dicomweb-proxy).
CERT_PATH = "/opt/dicomweb-proxy/certs/server.crt"
KEY_PATH = "/opt/dicomweb-proxy/certs/server.key"
# Relative to the folder the proxy runs in (as in the proxy's own example),
# so the file runs as given anywhere; a service had better make it absolute.
STORAGE_PATH = "./data"
# With edge enforcement on, the gate's nginx (proxyconfig) takes the public
# address and TLS, and forwards to the proxy on this port.
BEHIND_GATE_PORT = 8081
METHODS = ["GET", "HEAD", "OPTIONS"]
ALLOWED_HEADERS = ["Authorization", "Accept", "Content-Type", "Range", "If-None-Match"]


class ProxyConfigRefused(ValueError):
    """No config.jsonc for this server; the message says why in plain words
    and what to do instead."""


@dataclass(frozen=True)
class PacsbinProxyView:
    """What a page shows for a server behind Pacsbin's proxy: the config (or
    why there is none), the archive administrators' sheet (dimse mode), and,
    when the dicomweb mode cannot work, reverse-proxy configurations to use
    instead."""

    config: str = ""
    refused: str = ""
    sheet: list[str] = field(default_factory=list)
    alternatives: list[tuple[str, str]] = field(default_factory=list)
    # Edge enforcement on: the gate's nginx and Caddy in front of the proxy.
    gate: list[tuple[str, str]] = field(default_factory=list)


def _settings(server: DicomWebServer) -> dict[str, Any]:
    name = printable(server.name, 80)
    if server.pacsbin_proxy is None:
        raise ProxyConfigRefused(
            f"No configuration for Pacsbin's proxy for “{name}”: the server has "
            "no pacsbin_proxy settings. Missing: mode, and for the dimse mode "
            "archive_ae_title, archive_host, archive_port, proxy_ae_title and "
            "proxy_dimse_port (for the dicomweb mode forward_qido_url and "
            "forward_wado_url)."
        )
    try:
        settings = normalize_pacsbin_proxy(server.pacsbin_proxy)
    except ValidationError as exc:
        raise ProxyConfigRefused(
            f"No configuration for Pacsbin's proxy for “{name}”: its settings "
            f"break the rule. {' '.join(proxy_error_messages(exc))}"
        ) from None
    assert settings is not None
    return settings


def _proxy_origin(server: DicomWebServer) -> UrlParts:
    """The proxy's public origin: the server's QIDO URL, without a path."""
    name = printable(server.name, 80)
    try:
        parts = split_dicomweb_url(server.qido_url)
    except ValidationError as exc:
        raise ProxyConfigRefused(
            f"No configuration for Pacsbin's proxy for “{name}”: its QIDO URL "
            f"breaks the URL rule. {exc.messages[0]}"
        ) from None
    if parts.path:
        raise ProxyConfigRefused(
            f"No configuration for Pacsbin's proxy for “{name}”: the proxy answers "
            f"at the root of its address, so the QIDO and WADO URLs must be its "
            f"origin ({parts.origin}), without “{printable(parts.path, 80)}”. "
            "Correct the URLs first."
        )
    return parts


def dicomweb_path_refusal(server: DicomWebServer) -> str | None:
    """Why the dicomweb mode cannot reach this archive (its DICOMweb root has
    a path, which the proxy drops), or None."""
    settings = server.pacsbin_proxy
    if not isinstance(settings, dict) or settings.get("mode") != PROXY_MODE_DICOMWEB:
        return None
    for key in ("forward_qido_url", "forward_wado_url"):
        try:
            parts = split_dicomweb_url(settings.get(key))
        except ValidationError:
            continue
        if parts.path:
            root = printable(parts.url(), 120)
            return (
                f"Pacsbin's proxy cannot forward to {root} in its dicomweb mode: it "
                "drops the path of the forwarding URL, so it would send "
                f"{parts.origin}/studies instead of {root}/studies, and the archive "
                "would answer 404. Use one of these instead: Pacsbin's proxy in "
                "its dimse mode, if the archive also speaks DIMSE (give its AE "
                "title, host and port); or a reverse proxy (nginx, Apache httpd or "
                "Caddy) that keeps the path: its configurations are below, and "
                "then how CORS is met is “A reverse proxy adds CORS headers”."
            )
    return None


def render(server: DicomWebServer, origins: list[str]) -> str:
    """The ``config.jsonc`` for this server, allowing exactly ``origins``.
    ProxyConfigRefused when the server has no (valid) settings, its URLs are
    not the proxy's origin, or the dicomweb mode cannot reach the archive."""
    settings = _settings(server)
    public = _proxy_origin(server)
    refusal = dicomweb_path_refusal(server)
    if refusal:
        raise ProxyConfigRefused(refusal)
    for origin in origins:
        if "*" in origin:
            # The proxy reads * in an origin as a wildcard pattern.
            raise ProxyConfigRefused(
                f"The allowed origin “{printable(origin, 80)}” holds “*”, which "
                "Pacsbin's proxy would read as a wildcard: fix UPLOADER_ORIGINS."
            )
    return _write(server, settings, public, origins)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str, indent: int = 0) -> None:
        # A // comment ends only at a line break: printable() writes every
        # character that could be one as <U+XXXX>.
        self.lines.append(" " * indent + "// " + printable(text, 10_000))

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _json(value: Any) -> str:
    """One JSON value, every non-ASCII and control character escaped: the
    file keeps its shape whatever the value holds."""
    return json.dumps(value, ensure_ascii=True)


def _write(
    server: DicomWebServer,
    settings: dict[str, Any],
    public: UrlParts,
    origins: list[str],
) -> str:
    w = _Writer()
    mode = settings["mode"]
    gated = server.edge_enforced
    tls = public.scheme == "https" and not gated
    public_port = public.port or (443 if tls else 80)
    w.comment(
        f'config.jsonc for Pacsbin\'s proxy, for "{server.name}" '
        f"({server.institution.name}), made by Pacsbin Integrations."
    )
    if mode == PROXY_MODE_DIMSE:
        w.comment(
            "dimse mode: the proxy serves DICOMweb to Pacsbin's uploader and asks "
            "the archive by C-FIND and C-GET (or C-MOVE)."
        )
    else:
        w.comment(
            "dicomweb mode: the proxy forwards DICOMweb requests to the archive "
            "and adds the CORS headers."
        )
    w.comment(f"The uploader reaches the proxy at {public.origin} (QIDO and WADO URL).")
    w.comment("What to edit: lines marked EDIT (storage folder, certificate paths).")
    w.comment("Run: node dist/index.js config.jsonc (see the proxy's README).")
    w.raw("{")
    w.raw(f'  "proxyMode": {_json(mode)},')
    if mode == PROXY_MODE_DIMSE:
        w.raw('  "dimseProxySettings": {')
        w.comment(
            "The proxy's own DICOM identity. The archive must know this AE title "
            "(see the sheet for the archive's administrators).",
            4,
        )
        w.raw('    "proxyServer": {')
        w.raw(f'      "aet": {_json(settings["proxy_ae_title"])},')
        w.comment("Listen on every interface (for C-MOVE answers).", 6)
        w.raw('      "ip": "0.0.0.0",')
        w.raw(f'      "port": {int(settings["proxy_dimse_port"])}')
        w.raw("    },")
        w.comment("The archive (only the first peer is used).", 4)
        w.raw('    "peers": [')
        w.raw("      {")
        w.raw(f'        "aet": {_json(settings["archive_ae_title"])},')
        w.raw(f'        "ip": {_json(settings["archive_host"])},')
        w.raw(f'        "port": {int(settings["archive_port"])}')
        w.raw("      }")
        w.raw("    ]")
        w.raw("  },")
    else:
        w.raw('  "dicomwebProxySettings": {')
        w.comment(
            "The archive's DICOMweb root (the proxy keeps only the origin: it "
            "must be at /).",
            4,
        )
        w.raw(f'    "qidoForwardingUrl": {_json(settings["forward_qido_url"])},')
        w.raw(f'    "wadoForwardingUrl": {_json(settings["forward_wado_url"])}')
        w.raw("  },")
    w.comment(
        "EDIT: a folder the proxy may write (its cache of retrieved images); "
        "relative to where the proxy runs: for a service, an absolute path "
        "such as /opt/dicomweb-proxy/data.",
        2,
    )
    w.raw(f'  "storagePath": {_json(STORAGE_PATH)},')
    w.raw('  "enableCache": true,')
    w.raw('  "cacheRetentionMinutes": 60,')
    if gated:
        w.comment(
            "Edge enforcement is on: the gate's nginx (this server's nginx "
            f"configuration) serves {public.origin} and forwards here. Firewall "
            "this port: the proxy listens on every interface, and only the "
            "gate's nginx may reach it.",
            2,
        )
        w.raw(f'  "webserverPort": {BEHIND_GATE_PORT},')
    elif tls:
        w.comment("Plain HTTP only redirects to HTTPS.", 2)
        w.raw('  "webserverPort": 80,')
    else:
        w.comment(
            "Plain HTTP, as the registered URL says: browsers on https pages may "
            "refuse it; prefer https.",
            2,
        )
        w.raw(f'  "webserverPort": {public_port},')
    if mode == PROXY_MODE_DIMSE:
        w.comment(
            "true: C-GET (images come back on the proxy's own connection). false: "
            "C-MOVE to the proxy's AE title, which then needs the proxy's host "
            "and DIMSE port registered at the archive.",
            2,
        )
        w.raw('  "useCget": true,')
        w.raw('  "qidoMinChars": 0,')
        w.raw('  "qidoAppendWildcard": true,')
    w.raw('  "ssl": {')
    w.raw(f'    "enabled": {"true" if tls else "false"},')
    w.raw(f'    "port": {public_port if tls else 443},')
    w.comment(
        f"EDIT: the certificate and key for {public.host} (absolute paths). "
        "Without them an https proxy does not start; generateSelfSigned makes a "
        "certificate browsers refuse (tests only).",
        4,
    )
    w.raw(f'    "certPath": {_json(CERT_PATH)},')
    w.raw(f'    "keyPath": {_json(KEY_PATH)},')
    w.raw('    "generateSelfSigned": false,')
    w.raw(f'    "redirectHttp": {"true" if tls else "false"}')
    w.raw("  },")
    w.raw('  "cors": {')
    w.comment(
        "Exactly Pacsbin's uploader (and the registry, for the browser check); "
        "never * .",
        4,
    )
    w.raw(f'    "origin": [{", ".join(_json(origin) for origin in origins)}],')
    w.raw(f'    "methods": [{", ".join(_json(m) for m in METHODS)}],')
    w.comment("Authorization is listed by name (a * never covers it).", 4)
    w.raw(f'    "allowedHeaders": [{", ".join(_json(h) for h in ALLOWED_HEADERS)}],')
    w.comment(
        "true only when the archive needs the user's browser credentials"
        + (" (it does)." if server.needs_credentials else " (it does not)."),
        4,
    )
    w.raw(f'    "credentials": {"true" if server.needs_credentials else "false"}')
    w.raw("  }")
    w.raw("}")
    return w.text()


def archive_sheet(server: DicomWebServer) -> list[str]:
    """For the archive's administrators (dimse mode): what to register so the
    archive answers the proxy. Empty for any other server."""
    settings = server.pacsbin_proxy
    try:
        settings = normalize_pacsbin_proxy(settings)
    except ValidationError:
        return []
    if settings is None or settings["mode"] != PROXY_MODE_DIMSE:
        return []
    try:
        host = split_dicomweb_url(server.qido_url).host.strip("[]")
    except ValidationError:
        host = "(the proxy's host)"
    aet = settings["proxy_ae_title"]
    port = settings["proxy_dimse_port"]
    return [
        f"On the archive {settings['archive_ae_title']} "
        f"({settings['archive_host']}, port {settings['archive_port']}), register "
        f"Pacsbin's proxy as a DICOM node (modality): AE title {aet}, host {host} "
        f"(or the proxy machine's address inside your network), port {port}.",
        f"Allow {aet} to query (C-FIND, study, series and image level) and to "
        "retrieve (C-GET, and C-MOVE).",
        "Retrieval: the proxy uses C-GET (useCget true in its configuration); the "
        "archive sends the images back on the proxy's own connection, so no "
        "connection from the archive to the proxy is needed.",
        f"If the archive does not support C-GET: set useCget to false; the proxy "
        f"then asks by C-MOVE with itself ({aet}) as destination, and the archive "
        f"connects to {host}, port {port}, to send the images: let that "
        "connection through.",
        f"Until {aet} is registered the archive refuses the proxy's searches, and "
        "the registry's check says so.",
    ]
