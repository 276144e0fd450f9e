"""Fix-it configurations: a reverse proxy that adds the CORS headers.

One per server, for nginx, Apache httpd and Caddy, built from the server's
URLs, whether the archive needs browser credentials, and the allowed origins.
Each proxies to the archive, answers CORS preflights itself, allows only the
allowed origins (echoed, with ``Vary: Origin``), lists Authorization by name,
exposes the headers the uploader reads, and sends all of it on error answers
too. The operator edits only the name, the port and the certificate paths.

For a server with ``edge_enforced`` the nginx and Caddy configurations also
carry the gate (DESIGN.md "The gate"): every request but a preflight is
checked with the registry's ``/api/v1/edge/verify`` first, the browser's
token never reaches the archive, and refusals keep the CORS headers.
``render`` writes a marked placeholder where the edge key goes (a page or the
API never shows a key); ``render_gated`` writes the key in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from integrations.connectivity import pacsbinproxy
from integrations.connectivity.pacsbinproxy import PacsbinProxyView
from integrations.validators import (
    dicomweb_url_problem,
    escape_path,
    printable,
    split_dicomweb_url,
)

if TYPE_CHECKING:
    from integrations.models import DicomWebServer

# The reverse proxies; ALL_KINDS adds Pacsbin's own proxy (config.jsonc).
KINDS = ("nginx", "apache", "caddy")
ALL_KINDS = (*KINDS, pacsbinproxy.KIND)
PROXY_NAME = "dicomweb-proxy.example.org"
ALLOW_METHODS = "GET, HEAD, OPTIONS"
ALLOW_HEADERS = "Authorization, Accept, Content-Type, Range, If-None-Match"
EXPOSE_HEADERS = "Content-Location, Content-Length, ETag, Location, Warning"
MAX_AGE = 600
# The archive's own CORS headers are dropped so the browser never sees two.
ARCHIVE_CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
)


# The gate (see ``Gate``). The placeholder is what ``render`` writes instead of
# the key: a value nginx and Caddy accept, which the registry refuses (403).
EDGE_KEY_PLACEHOLDER = "EDIT-PASTE-THE-EDGE-KEY-HERE"
VERIFY_PATH = "/api/v1/edge/verify"
REGISTRY_PLACEHOLDER = "https://registry.example.org"
# nginx makes the decision cache's folder when it starts (as root, for its
# worker user), but not its parents: /var/cache exists on every distribution.
EDGE_CACHE_FOLDER = "/var/cache/pacsbin-edge-{server_id}"
# Where Pacsbin's proxy listens when the gate's nginx is in front of it.
BEHIND_GATE_UPSTREAM = f"http://127.0.0.1:{pacsbinproxy.BEHIND_GATE_PORT}"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class UnknownKind(ValueError):
    def __init__(self, kind: str) -> None:
        super().__init__(
            f"“{kind}” is not a configuration kind: use one of {', '.join(ALL_KINDS)}."
        )


class ConfigRefused(ValueError):
    """No configuration is written for this server: a stored URL breaks the
    URL rule (stored before the rule existed), or holds something no
    configuration can carry. The message names the field and the problem."""


URL_FIELDS = (("qido_url", "QIDO URL"), ("wado_url", "WADO URL"))
# What a value written as a configuration argument may hold, whatever the
# format: the URL rule's path characters, percent escapes and IPv6 brackets.
# Quoting and escaping come on top; this keeps every argument one argument.
_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/!&()*+,=:@%[]"
)


def allowed_origins() -> list[str]:
    """The uploader's origins, plus the registry's own public origin when set
    (the browser-side check runs from there)."""
    origins = list(settings.UPLOADER_ORIGINS)
    if settings.REGISTRY_PUBLIC_ORIGIN:
        origins.append(settings.REGISTRY_PUBLIC_ORIGIN)
    return list(dict.fromkeys(origins))


@dataclass(frozen=True)
class Route:
    """One public path prefix of the proxy and the archive URL behind it."""

    prefix: str  # "/dicom-web/"
    upstream: str  # "http://127.0.0.1:8042/dicom-web/"
    role: str  # "QIDO and WADO", "QIDO", "WADO"

    @property
    def upstream_origin(self) -> str:
        parts = urlsplit(self.upstream)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def upstream_path(self) -> str:
        return urlsplit(self.upstream).path

    @property
    def comment(self) -> str:
        return comment_text(f"{self.role}: {self.prefix} here is {self.upstream}")

    @property
    def https(self) -> bool:
        return self.upstream.startswith("https://")


def routes(qido_url: str, wado_url: str) -> list[Route]:
    """The proxy's locations. The archive's own path is kept when it can be (so
    the URLs stay recognisable); two archives URLs sharing a path get /qido/
    and /wado/."""

    def path_of(url: str) -> str:
        return urlsplit(url).path.rstrip("/") + "/"

    if qido_url == wado_url:
        return [Route(path_of(qido_url), qido_url + "/", "QIDO and WADO")]
    qido_path, wado_path = path_of(qido_url), path_of(wado_url)
    if qido_path.startswith(wado_path) or wado_path.startswith(qido_path):
        qido_path, wado_path = "/qido/", "/wado/"
    return [
        Route(qido_path, qido_url + "/", "QIDO"),
        Route(wado_path, wado_url + "/", "WADO"),
    ]


@dataclass(frozen=True)
class Gate:
    """What a gated configuration needs: where the registry's verify is, the
    edge key (or None: the marked placeholder), and how long decisions are
    kept."""

    server_id: int
    registry: str  # the registry's public origin, or REGISTRY_PLACEHOLDER
    edge_key: str | None
    cache_seconds: int
    grace_seconds: int

    @property
    def verify_url(self) -> str:
        return self.registry + VERIFY_PATH

    @property
    def key_value(self) -> str:
        return self.edge_key or EDGE_KEY_PLACEHOLDER

    @property
    def zone(self) -> str:
        return f"pacsbin_edge_{self.server_id}"

    @property
    def cache_folder(self) -> str:
        return EDGE_CACHE_FOLDER.format(server_id=self.server_id)

    @property
    def inactive_seconds(self) -> int:
        # Entries unused this long are dropped: never before their grace ends.
        return max(60, self.cache_seconds + self.grace_seconds)

    def key_comment(self) -> list[str]:
        if self.edge_key:
            return [
                "The server's edge key: keep this file private (it is a secret, "
                "like a password). Create a new key to replace it.",
            ]
        return [
            f"EDIT: replace {EDGE_KEY_PLACEHOLDER} with the server's edge key. "
            f"POST /api/v1/servers/{self.server_id}/edge-key (or the admin's "
            '"Create edge key") makes one and answers this configuration with it '
            "in place. Until then the registry refuses every request (403).",
        ]


def is_enforced(server: DicomWebServer) -> bool:
    return bool(server.edge_enforced)


def gate_for(server: DicomWebServer, edge_key: str | None) -> Gate:
    """The gate's values for ``server``; every one written as an argument is
    checked here (a key or an origin holding what no configuration can carry
    raises ConfigRefused)."""
    registry = settings.REGISTRY_PUBLIC_ORIGIN or REGISTRY_PLACEHOLDER
    return Gate(
        server_id=int(server.pk or 0),
        registry=_plain(registry.rstrip("/"), "registry origin"),
        edge_key=_plain(edge_key, "edge key") if edge_key else None,
        cache_seconds=int(getattr(settings, "EDGE_CACHE_SECONDS", 30)),
        grace_seconds=int(getattr(settings, "EDGE_GRACE_SECONDS", 300)),
    )


def render_gated(server: DicomWebServer, edge_key: str) -> dict[str, str]:
    """The nginx and Caddy configurations with the gate and ``edge_key`` in
    place (what ``POST …/edge-key`` answers), whether or not enforcement is
    on yet: a key is made before the switch. Raises ConfigRefused as
    ``render`` does."""
    if not edge_key:
        raise ConfigRefused("No gated configuration without an edge key.")
    problem = refusal(server)
    if problem:
        raise ConfigRefused(problem)
    gate = gate_for(server, edge_key)
    return {kind: compose(server, kind, gate) for kind in ("nginx", "caddy")}


def render(server: DicomWebServer, kind: str) -> str:
    """The configuration text for ``kind`` (nginx, apache, caddy or pacsbin).

    Raises UnknownKind, or ConfigRefused when a stored URL breaks the URL rule
    (a row from before the rule): such a row gets a message, never a
    configuration. For ``pacsbin``, also when the server has no (usable)
    proxy settings, or the proxy's dicomweb mode cannot reach the archive."""
    if kind == pacsbinproxy.KIND:
        try:
            return pacsbinproxy.render(server, allowed_origins())
        except pacsbinproxy.ProxyConfigRefused as exc:
            raise ConfigRefused(str(exc)) from None
    if kind not in _RENDERERS:
        raise UnknownKind(kind)
    problem = refusal(server)
    if problem:
        raise ConfigRefused(problem)
    return compose(
        server, kind, gate_for(server, None) if is_enforced(server) else None
    )


def refusal(server: DicomWebServer) -> str | None:
    """Why no configuration is written for this server (a stored URL breaks
    the URL rule), naming the field and the problem; None when none."""
    for field, label in URL_FIELDS:
        problem = dicomweb_url_problem(getattr(server, field))
        if problem:
            return (
                f"No configuration for “{printable(server.name, 80)}”: its "
                f"{label} breaks the URL rule. {problem} Correct the {label} "
                "first."
            )
    return None


def render_all(server: DicomWebServer) -> tuple[list[tuple[str, str]], str]:
    """Every reverse proxy's configuration, or none and the message saying
    why: what the admin's server page and the contact's status page show for
    a server that is not behind Pacsbin's proxy (see ``pacsbin_view``)."""
    return render_reverse_proxies(server)


def render_reverse_proxies(
    server: DicomWebServer,
) -> tuple[list[tuple[str, str]], str]:
    try:
        return [(kind, render(server, kind)) for kind in KINDS], ""
    except ConfigRefused as exc:
        return [], str(exc)


def behind_pacsbin_proxy(server: DicomWebServer) -> bool:
    return server.cors_mode == "dimse_proxy"


def pacsbin_view(server: DicomWebServer) -> PacsbinProxyView:
    """What a page shows for a server behind Pacsbin's proxy: its
    config.jsonc (or why none), the archive's sheet, and reverse-proxy
    configurations to use instead when the dicomweb mode cannot work."""
    sheet = pacsbinproxy.archive_sheet(server)
    try:
        config = pacsbinproxy.render(server, allowed_origins())
        gate: list[tuple[str, str]] = []
        if is_enforced(server):
            gate, _refused = render_reverse_proxies(server)
            gate = [(kind, text) for kind, text in gate if kind != "apache"]
        return PacsbinProxyView(config=config, sheet=sheet, gate=gate)
    except pacsbinproxy.ProxyConfigRefused as exc:
        refused = str(exc)
    alternatives: list[tuple[str, str]] = []
    if pacsbinproxy.dicomweb_path_refusal(server):
        settings = server.pacsbin_proxy or {}
        archive = type(server)(
            pk=server.pk,
            name=server.name,
            institution=server.institution,
            qido_url=settings.get("forward_qido_url", ""),
            wado_url=settings.get("forward_wado_url", ""),
            needs_credentials=server.needs_credentials,
            edge_enforced=server.edge_enforced,
        )
        alternatives, _refused = render_reverse_proxies(archive)
    return PacsbinProxyView(refused=refused, sheet=sheet, alternatives=alternatives)


def compose(server: DicomWebServer, kind: str, gate: Gate | None = None) -> str:
    """The writer alone, without the URL rule: every value is escaped or
    quoted for its format, paths are percent-encoded, and a URL whose host,
    port, credentials or query cannot be written safely raises
    ConfigRefused. ``render`` is what callers use; this is the second wall.
    With ``gate``, the configuration enforces it (Apache's says it cannot)."""
    if kind not in _RENDERERS:
        raise UnknownKind(kind)
    qido, wado = (_writable_url(server, field, label) for field, label in URL_FIELDS)
    origins = [_plain(origin, "allowed origin") for origin in allowed_origins()]
    found = routes(qido, wado)
    if gate and behind_pacsbin_proxy(server):
        # The gate's nginx takes the proxy's public address; the proxy moves
        # to a loopback port behind it (its config.jsonc says so).
        found = [Route("/", BEHIND_GATE_UPSTREAM + "/", "Pacsbin's proxy")]
    return _RENDERERS[kind](server, origins, found, gate)


def _writable_url(server: DicomWebServer, field: str, label: str) -> str:
    value = getattr(server, field)
    try:
        parts = split_dicomweb_url(value)
    except ValidationError as exc:
        raise ConfigRefused(
            f"No configuration for “{printable(server.name, 80)}”: its {label} "
            f"cannot be written into one. {exc.messages[0]}"
        ) from None
    return parts.url(escape_path(parts.path))


def _plain(value: str, what: str) -> str:
    """``value`` when every character is a plain URL character, else
    ConfigRefused: no data ever adds a quote, a brace, a semicolon, a dollar,
    a space or a line to a configuration."""
    for ch in value:
        if ch not in _PLAIN:
            raise ConfigRefused(
                f"The {what} “{printable(value, 120)}” holds "
                f"“{printable(ch)}”, which no configuration can carry safely."
            )
    return value


def comment_text(value: str) -> str:
    """Data written into a comment: one line, printable, and none of the
    characters a format reads even there (Apache's line-ending backslash,
    Caddy's {$ENV} braces)."""
    text = printable(value, 10_000)
    for ch in "\\{}":
        text = text.replace(ch, f"<U+{ord(ch):04X}>")
    return text


def nginx_string(value: str) -> str:
    """A double-quoted nginx string. nginx cannot escape ``$`` (a variable),
    so a value holding one is refused."""
    _plain(value, "value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def apache_string(value: str) -> str:
    """A double-quoted Apache httpd argument (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def apache_header_value(value: str) -> str:
    """A quoted mod_headers value: ``%`` starts a format there, so doubled."""
    return apache_string(value.replace("%", "%%"))


def caddy_string(value: str) -> str:
    """A double-quoted Caddyfile token, placeholders' braces escaped."""
    _plain(value, "value")
    escaped = value.replace('"', '\\"').replace("{", "\\{").replace("}", "\\}")
    return f'"{escaped}"'


def _header(
    server: DicomWebServer,
    origins: list[str],
    found: list[Route],
    kind: str,
    comment: str,
    reload: str,
    gate: Gate | None = None,
) -> list[str]:
    qido, wado = found[0], found[-1]
    lines = [
        f'Fix-it {kind} configuration for "{server.name}" '
        f"({server.institution.name}), made by Pacsbin Integrations.",
        "A reverse proxy in front of the archive that adds the CORS headers "
        "Pacsbin's uploader needs.",
        f"1. Edit the server name ({PROXY_NAME}), the port and the certificate paths.",
        f"2. {reload}",
        *(
            [
                "3. It takes the address the registry gives for this server "
                f"({urlsplit(server.qido_url).netloc}): use that as the server "
                "name, and keep the registered URLs.",
            ]
            if gate and behind_pacsbin_proxy(server)
            else [
                "3. Give the registry the proxy's URLs: before review, under "
                "“Your proxy's URLs” on your request's status page (one review "
                "then switches the proxy on); after it, as a change sent from "
                "that page:",
                f"     QIDO URL: https://{PROXY_NAME}{qido.prefix.rstrip('/')}",
                f"     WADO URL: https://{PROXY_NAME}{wado.prefix.rstrip('/')}",
            ]
        ),
        f"Allowed origins: {', '.join(origins)}.",
        "The archive needs browser credentials: "
        + (
            "yes, so the origin is echoed with Access-Control-Allow-Credentials."
            if server.needs_credentials
            else "no (regenerate if that changes)."
        ),
    ]
    if gate:
        lines += gate_summary(server, gate, kind)
    return [f"{comment} {comment_text(line)}".rstrip() for line in lines]


def gate_summary(server: DicomWebServer, gate: Gate, kind: str) -> list[str]:
    """The header's lines about the gate, in plain words for hospital IT."""
    if kind == "Apache httpd":
        return []
    lines = [
        "The gate (edge enforcement is on): every request but a CORS preflight "
        "must carry a registry token (Authorization: Bearer) for a user approved "
        f"on this server; the proxy asks the registry ({gate.verify_url}) and "
        "refuses with the registry's 401 or 403, CORS headers kept. The token "
        "never reaches the archive.",
    ]
    if kind == "nginx":
        lines.append(
            f"Decisions are cached for {gate.cache_seconds} s (a revocation "
            "reaches this proxy within that); with the registry unreachable, a "
            "decision is used for at most the grace the registry sets (now "
            f"{gate.grace_seconds} s) after that, then the answer is 503."
        )
    else:
        lines.append(
            "Caddy keeps no decision cache: every request asks the registry (a "
            "revocation applies at once), and with the registry unreachable the "
            "answer is 503 at once (no grace)."
        )
    if behind_pacsbin_proxy(server):
        lines.append(
            "In front of Pacsbin's proxy: the proxy listens on "
            f"{BEHIND_GATE_UPSTREAM} (its config.jsonc says so); firewall that "
            "port, only this proxy may reach it."
        )
    if server.needs_credentials:
        lines.append(
            "The archive needs credentials: put its own on the line marked EDIT "
            "below (they stay here, never sent to browsers)."
        )
    return lines


def _nginx(
    server: DicomWebServer, origins: list[str], found: list[Route], gate: Gate | None
) -> str:
    variable = f"$pacsbin_cors_origin_{int(server.pk or 0)}"
    out = _header(
        server,
        origins,
        found,
        "nginx",
        "#",
        "Save as /etc/nginx/conf.d/pacsbin-dicomweb.conf, then: nginx -t && "
        "systemctl reload nginx",
        gate,
    )
    if gate:
        out += _nginx_cache(gate)
    out += [
        "",
        "# An allowed origin is echoed back; any other gets the first allowed one,",
        "# which its browser refuses (and which tells whoever debugs it why).",
        f"map $http_origin {variable} {{",
        f"    default {nginx_string(origins[0])};",
        *(f"    {nginx_string(origin)} $http_origin;" for origin in origins),
        "}",
        "",
        "server {",
        "    listen 443 ssl;",
        "    listen [::]:443 ssl;",
        f"    server_name {PROXY_NAME};",
        f"    ssl_certificate /etc/ssl/certs/{PROXY_NAME}.pem;",
        f"    ssl_certificate_key /etc/ssl/private/{PROXY_NAME}.key;",
        "",
        "    # Large studies: WADO-RS answers stream through without a size limit.",
        "    client_max_body_size 0;",
        "    proxy_buffering off;",
        "    proxy_read_timeout 300s;",
    ]
    cors = [
        f"add_header Access-Control-Allow-Origin {variable} always;",
        *(
            ['add_header Access-Control-Allow-Credentials "true" always;']
            if server.needs_credentials
            else []
        ),
        "add_header Vary Origin always;",
    ]
    if gate:
        out += _nginx_verify(gate, cors)
    for route in found:
        out += [
            "",
            f"    # {route.comment}",
            f"    location {nginx_string(route.prefix)} {{",
            "        # Browsers send this preflight before a request carrying",
            "        # Authorization; answered here, the archive never sees it.",
            "        if ($request_method = OPTIONS) {",
            *(f"            {line}" for line in cors),
            f'            add_header Access-Control-Allow-Methods "{ALLOW_METHODS}" '
            "always;",
            f'            add_header Access-Control-Allow-Headers "{ALLOW_HEADERS}" '
            "always;",
            f"            add_header Access-Control-Max-Age {MAX_AGE} always;",
            "            return 204;",
            "        }",
            *(_nginx_gate_lines(server) if gate else []),
            "        # 'always': error answers carry the headers too, so a 404 is",
            "        # not mistaken for a CORS failure in the browser.",
            *(f"        {line}" for line in cors),
            f'        add_header Access-Control-Expose-Headers "{EXPOSE_HEADERS}" '
            "always;",
            *(f"        proxy_hide_header {name};" for name in ARCHIVE_CORS_HEADERS),
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "        proxy_set_header X-Forwarded-Host $host;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            *(_nginx_archive_credentials(server) if gate else []),
            *(["        proxy_ssl_server_name on;"] if route.https else []),
            f"        proxy_pass {nginx_string(route.upstream)};",
            "    }",
        ]
    out += ["}", ""]
    return "\n".join(out)


def _nginx_cache(gate: Gate) -> list[str]:
    return [
        "",
        "# The gate's decision cache (at http level: this file is included there).",
        "# EDIT if your nginx keeps caches elsewhere: nginx makes this folder when",
        "# it starts (its parent must exist).",
        f"proxy_cache_path {gate.cache_folder} levels=1:2 keys_zone={gate.zone}:4m "
        f"max_size=64m inactive={gate.inactive_seconds}s use_temp_path=off;",
    ]


def _nginx_verify(gate: Gate, cors: list[str]) -> list[str]:
    https = gate.verify_url.startswith("https://")
    return [
        "",
        "    # The gate's check: a subrequest to the registry (internal: browsers",
        "    # cannot call it). It forwards the browser's Authorization (the token),",
        "    # sends the edge key and no body.",
        "    location = /_pacsbin_edge_verify {",
        "        internal;",
        f"        proxy_pass {nginx_string(gate.verify_url)};",
        "        proxy_pass_request_body off;",
        '        proxy_set_header Content-Length "";',
        "        proxy_set_header Authorization $http_authorization;",
        *(f"        # {comment_text(line)}" for line in gate.key_comment()),
        f"        proxy_set_header X-Edge-Key {nginx_string(gate.key_value)};",
        *(
            [
                "        proxy_ssl_server_name on;",
                "        # The edge key goes only to the real registry. EDIT: your",
                "        # distribution's CA bundle, if not Debian's or Ubuntu's.",
                "        proxy_ssl_verify on;",
                f"        proxy_ssl_trusted_certificate {CA_BUNDLE};",
            ]
            if https
            else []
        ),
        "        proxy_connect_timeout 5s;",
        "        proxy_read_timeout 10s;",
        "        # Grants (204) are kept per token for the registry's max-age (its",
        "        # EDGE_CACHE_SECONDS; the proxy_cache_valid below if it sends",
        "        # none); refusals are never kept. With the registry down or",
        "        # timing out, a kept grant is used only within the registry's",
        "        # stale-if-error (EDGE_GRACE_SECONDS) after it expired: nginx",
        "        # honours it. No proxy_cache_use_stale here: it would serve stale",
        "        # grants for as long as they stay in the cache.",
        "        # The server's proxy_buffering off would turn the cache off here.",
        "        proxy_buffering on;",
        "        # A kept decision is a small file: keeping its descriptor open",
        "        # saves an open() per request. Its expiry is read from the file,",
        "        # so a descriptor a second old can only make nginx ask sooner.",
        "        open_file_cache max=10000 inactive=60s;",
        "        open_file_cache_valid 1s;",
        f"        proxy_cache {gate.zone};",
        "        proxy_cache_key $http_authorization;",
        f"        proxy_cache_valid 204 {gate.cache_seconds}s;",
        "    }",
        "",
        "    # The registry could not be asked (down, timing out, erring) and no",
        "    # usable decision is kept: closed, 503, CORS headers kept.",
        "    location @pacsbin_edge_unavailable {",
        *(f"        {line}" for line in cors),
        "        return 503;",
        "    }",
    ]


def _nginx_gate_lines(server: DicomWebServer) -> list[str]:
    return [
        "        # The gate: the registry decides (204 passes; its 401 or 403 goes",
        "        # to the browser with the CORS headers below). nginx answers 500",
        "        # when it could not decide, shown as 503.",
        "        auth_request /_pacsbin_edge_verify;",
        "        # The approved user, for your access log (log_format).",
        "        auth_request_set $pacsbin_edge_email $upstream_http_x_pacsbin_email;",
        "        error_page 500 = @pacsbin_edge_unavailable;",
    ]


def _nginx_archive_credentials(server: DicomWebServer) -> list[str]:
    lines = [
        "        # The browser's Authorization is the registry's token: never the",
        "        # archive's.",
    ]
    if server.needs_credentials:
        lines += [
            "        # EDIT: the archive needs credentials: set its own here instead",
            '        # of nothing, e.g. "Basic <base64 of user:password>" (they stay',
            "        # at the edge, never sent to browsers).",
        ]
    return [*lines, '        proxy_set_header Authorization "";']


def _apache(
    server: DicomWebServer, origins: list[str], found: list[Route], gate: Gate | None
) -> str:
    if gate:
        return _apache_cannot_gate(server, origins, found)
    pattern = "|".join(re.escape(origin) for origin in origins)
    out = _header(
        server,
        origins,
        found,
        "Apache httpd",
        "#",
        "Enable the modules (a2enmod ssl proxy proxy_http headers rewrite), save "
        "as /etc/apache2/sites-available/pacsbin-dicomweb.conf, a2ensite it, "
        "then: apachectl configtest && systemctl reload apache2",
    )
    out += [
        "",
        "<VirtualHost *:443>",
        f"    ServerName {PROXY_NAME}",
        "    SSLEngine on",
        f"    SSLCertificateFile /etc/ssl/certs/{PROXY_NAME}.pem",
        f"    SSLCertificateKeyFile /etc/ssl/private/{PROXY_NAME}.key",
        "",
        "    # An allowed origin is echoed back; any other gets the first allowed",
        "    # one, which its browser refuses.",
        f"    SetEnvIf Origin {apache_string(f'^({pattern})$')} PACSBIN_CORS_ORIGIN=$1",
        "    # The archive's own CORS headers are dropped so the browser never",
        "    # sees two; 'always' puts ours on error answers too.",
        *(f"    Header unset {name}" for name in ARCHIVE_CORS_HEADERS),
        '    Header always set Access-Control-Allow-Origin "%{PACSBIN_CORS_ORIGIN}e"'
        " env=PACSBIN_CORS_ORIGIN",
        "    Header always set Access-Control-Allow-Origin "
        f"{apache_header_value(origins[0])} env=!PACSBIN_CORS_ORIGIN",
        *(
            ['    Header always set Access-Control-Allow-Credentials "true"']
            if server.needs_credentials
            else []
        ),
        '    Header always merge Vary "Origin"',
        f'    Header always set Access-Control-Allow-Methods "{ALLOW_METHODS}"',
        f'    Header always set Access-Control-Allow-Headers "{ALLOW_HEADERS}"',
        f'    Header always set Access-Control-Expose-Headers "{EXPOSE_HEADERS}"',
        f'    Header always set Access-Control-Max-Age "{MAX_AGE}"',
        "",
        "    # Browsers send a preflight before a request carrying Authorization;",
        "    # answered here with 204, the archive never sees it.",
        "    RewriteEngine On",
        "    RewriteCond %{REQUEST_METHOD} OPTIONS",
        "    RewriteRule ^ - [R=204,L]",
        "",
        *(["    SSLProxyEngine on"] if any(r.https for r in found) else []),
        "    ProxyRequests Off",
        "    ProxyTimeout 300",
    ]
    for route in found:
        prefix, upstream = apache_string(route.prefix), apache_string(route.upstream)
        out += [
            f"    # {route.comment}",
            f"    ProxyPass {prefix} {upstream}",
            f"    ProxyPassReverse {prefix} {upstream}",
        ]
    out += ["</VirtualHost>", ""]
    return "\n".join(out)


def _apache_cannot_gate(
    server: DicomWebServer, origins: list[str], found: list[Route]
) -> str:
    """Comments only: an Apache proxy that forwards without the gate would be
    the way around it."""
    lines = [
        f'Apache httpd configuration for "{server.name}" '
        f"({server.institution.name}), made by Pacsbin Integrations.",
        "Edge enforcement is on for this server, and Apache httpd cannot enforce "
        "it: it has no standard way to ask the registry about each request's "
        "token (nginx has auth_request, Caddy has forward_auth) and keep the "
        "answer for a bounded time. So there is no Apache configuration: a "
        "proxy that forwards without the check would let anyone past the gate.",
        "Use the nginx or the Caddy configuration of this server (in front of, "
        "or instead of, Apache), or turn edge enforcement off for this server.",
    ]
    return "\n".join([*(f"# {comment_text(line)}" for line in lines), ""])


def _caddy(
    server: DicomWebServer, origins: list[str], found: list[Route], gate: Gate | None
) -> str:
    out = _header(
        server,
        origins,
        found,
        "Caddy",
        "#",
        "Add to /etc/caddy/Caddyfile (Caddy gets the certificate itself), then: "
        "caddy validate --config /etc/caddy/Caddyfile && systemctl reload caddy",
        gate,
    )
    out += [
        "",
        f"{PROXY_NAME} {{",
        "\t# An allowed origin is echoed back; any other gets the first allowed",
        "\t# one, which its browser refuses.",
        # One header line per origin: lines naming the same field are OR'ed
        # (the matcher takes one value a line).
        "\t@allowed_origin {",
        *(f"\t\theader Origin {caddy_string(origin)}" for origin in origins),
        "\t}",
        f"\theader Access-Control-Allow-Origin {caddy_string(origins[0])}",
        "\theader @allowed_origin Access-Control-Allow-Origin "
        '"{http.request.header.Origin}"',
        *(
            ['\theader Access-Control-Allow-Credentials "true"']
            if server.needs_credentials
            else []
        ),
        "\theader Vary Origin",
        f'\theader Access-Control-Allow-Methods "{ALLOW_METHODS}"',
        f'\theader Access-Control-Allow-Headers "{ALLOW_HEADERS}"',
        f'\theader Access-Control-Expose-Headers "{EXPOSE_HEADERS}"',
        f'\theader Access-Control-Max-Age "{MAX_AGE}"',
        *(_caddy_unavailable() if gate else []),
    ]
    for route in found:
        # The {uri} placeholder is ours; the path before it is data, escaped.
        rewrite = caddy_string(route.upstream_path.rstrip("/"))[:-1] + '{uri}"'
        out += [
            "",
            f"\t# {route.comment}",
            f"\thandle_path {caddy_string(route.prefix + '*')} {{",
            "\t\t# Browsers send a preflight before a request carrying Authorization;",
            "\t\t# answered here, the archive never sees it.",
            "\t\t@preflight method OPTIONS",
            "\t\trespond @preflight 204",
            *(_caddy_gate_lines(gate) if gate else []),
            f"\t\trewrite * {rewrite}",
            f"\t\treverse_proxy {caddy_string(route.upstream_origin)} {{",
            "\t\t\theader_up Host {upstream_hostport}",
            *(_caddy_archive_credentials(server) if gate else []),
            *(f"\t\t\theader_down -{name}" for name in ARCHIVE_CORS_HEADERS),
            "\t\t}",
            "\t}",
        ]
    out += ["}", ""]
    return "\n".join(out)


def _caddy_gate_lines(gate: Gate) -> list[str]:
    return [
        "\t\t# The gate: every other request is checked with the registry first",
        "\t\t# (route runs before respond, hence the matcher). It forwards",
        "\t\t# the browser's Authorization (the token) and sends the edge key; a",
        "\t\t# 2xx passes, the registry's 401 or 403 goes to the browser with the",
        "\t\t# CORS headers above.",
        "\t\t@gated not method OPTIONS",
        "\t\troute @gated {",
        "\t\t\t# Marks a request whose check has not answered (see handle_errors).",
        "\t\t\tvars pacsbin_edge asking",
        f"\t\t\tforward_auth {caddy_string(gate.registry)} {{",
        f"\t\t\t\turi {caddy_string(VERIFY_PATH)}",
        *(f"\t\t\t\t# {comment_text(line)}" for line in gate.key_comment()),
        f"\t\t\t\theader_up X-Edge-Key {caddy_string(gate.key_value)}",
        "\t\t\t\theader_up Host {upstream_hostport}",
        "\t\t\t}",
        "\t\t\tvars pacsbin_edge passed",
        "\t\t}",
    ]


def _caddy_unavailable() -> list[str]:
    return [
        "",
        "\t# The registry could not be asked (down, timing out): closed, 503,",
        "\t# CORS headers kept. An archive that is down stays a 502.",
        "\thandle_errors {",
        "\t\t@pacsbin_edge_unreachable vars pacsbin_edge asking",
        "\t\trespond @pacsbin_edge_unreachable 503",
        "\t}",
    ]


def _caddy_archive_credentials(server: DicomWebServer) -> list[str]:
    lines = [
        "\t\t\t# The browser's Authorization is the registry's token: never the",
        "\t\t\t# archive's.",
    ]
    if server.needs_credentials:
        lines += [
            "\t\t\t# EDIT: the archive needs credentials: replace the next line",
            '\t\t\t# with header_up Authorization "Basic <base64 of user:password>"',
            "\t\t\t# (they stay at the edge, never sent to browsers).",
        ]
    return [*lines, "\t\t\theader_up -Authorization"]


_RENDERERS = {"nginx": _nginx, "apache": _apache, "caddy": _caddy}
