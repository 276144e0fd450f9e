"""A small HTTP client that only goes where the SSRF guard lets it.

Each request resolves the host once (through the guard), connects to a checked
address while sending the original Host header and verifying the certificate
against the original name (SNI), and never follows a redirect without checking
the next hop the same way. A redirect off the first URL's origin (scheme, host
and port) is never followed: the query (a search, a study's UIDs in a path)
was meant for the archive, not for wherever it points. Every request has a
connect timeout, a total deadline and a cap on the bytes read.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from integrations.connectivity import ssrf

CONNECT_TIMEOUT = 5.0  # seconds
TOTAL_TIMEOUT = 15.0  # seconds, for one request from connect to last byte
MAX_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 3
USER_AGENT = "pacsbin-integrations-connectivity-check/1"
# None: the system's trusted authorities, as the browsers on the machine use.
CA_CERTS: str | None = None
_CHUNK = 64 * 1024


class FetchError(Exception):
    """A request that got no usable answer.

    ``kind`` is one of ``blocked``, ``dns``, ``refused``, ``timeout``, ``tls``,
    ``broken``, ``too_large``, ``redirect_loop``, ``redirect_off_origin``; the
    message is plain words. ``said``: what of the message the other side wrote
    (the reason a TLS library or a connection gave, which may quote the
    archive's certificate).
    """

    def __init__(self, kind: str, message: str, said: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.said = said


@dataclass
class Response:
    url: str  # the URL that gave this answer (after any redirects)
    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes
    redirects: list[str] = field(default_factory=list)  # the hops followed
    # https: when the archive's certificate (verified) stops being valid.
    tls_expires_at: datetime | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.getlist(name)
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        return self.headers.getlist(name)


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = CONNECT_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT
    max_bytes: int = MAX_BYTES
    max_redirects: int = MAX_REDIRECTS


def fetch(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    follow_redirects: bool = False,
    limits: Limits | None = None,
    allow_private: bool | None = None,
) -> Response:
    """One request, with the guard applied to the URL and to each redirect
    hop; a redirect to another origin is an error, never followed."""
    limits = limits or Limits()
    redirects: list[str] = []
    current = url
    start = origin(url)
    while True:
        target = _check(current, allow_private)
        response = send(method, current, target, headers or {}, limits)
        location = response.header("location")
        if not (follow_redirects and 300 <= response.status < 400 and location):
            response.redirects = redirects
            return response
        if len(redirects) >= limits.max_redirects:
            raise FetchError(
                "redirect_loop",
                f"{url} redirected more than {limits.max_redirects} times.",
            )
        current = urljoin(current, location)
        if start is None or origin(current) != start:
            raise FetchError(
                "redirect_off_origin",
                f"{url} redirects to {current[:200]}, another origin; the "
                "registry does not follow it there.",
            )
        redirects.append(current)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None when the
    URL has none (never equal to a real one)."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not host:
        return None
    return scheme, host, port or (443 if scheme == "https" else 80)


def _check(url: str, allow_private: bool | None) -> ssrf.Target:
    try:
        return ssrf.check_url(url, allow_private=allow_private)
    except ssrf.Blocked as exc:
        raise FetchError("blocked", str(exc)) from None
    except ssrf.NameNotResolved as exc:
        raise FetchError("dns", str(exc)) from None


def send(
    method: str,
    url: str,
    target: ssrf.Target,
    headers: dict[str, str],
    limits: Limits,
) -> Response:
    """Send to the checked addresses (in order, until one accepts); read the
    answer within the deadline and the byte cap."""
    deadline = time.monotonic() + limits.total_timeout
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    request_headers = {"User-Agent": USER_AGENT, **headers, "Host": host_header}
    last_error: FetchError | None = None
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        timeout = urllib3.Timeout(
            connect=min(limits.connect_timeout, remaining), read=remaining
        )
        pool = _pool(target, address, timeout)
        try:
            raw = pool.urlopen(
                method,
                path,
                headers=request_headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except (NewConnectionError, ConnectTimeoutError) as exc:
            # The next address may answer (a name with IPv6 and IPv4, say).
            last_error = _connect_error(url, exc)
            pool.close()
            continue
        except HTTPError as exc:
            pool.close()
            raise _transport_error(url, exc) from None
        tls_expires_at = _certificate_expiry(raw) if target.scheme == "https" else None
        try:
            body = _read_body(raw, url, deadline, limits.max_bytes)
        finally:
            raw.release_conn()
            pool.close()
        return Response(
            url=url,
            status=raw.status,
            headers=raw.headers,
            body=body,
            tls_expires_at=tls_expires_at,
        )
    raise last_error or FetchError(
        "timeout", f"{url} did not answer within {limits.total_timeout:g} seconds."
    )


def _certificate_expiry(raw: urllib3.BaseHTTPResponse) -> datetime | None:
    """The notAfter of the certificate the archive presented on this very
    connection (verified against the name, so getpeercert has its fields)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        not_after = (sock.getpeercert() or {}).get("notAfter")
        if not isinstance(not_after, str):
            return None
        return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), tz=UTC)
    except (ValueError, OSError):
        return None


def _pool(
    target: ssrf.Target, address: str, timeout: urllib3.Timeout
) -> urllib3.HTTPConnectionPool:
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_CERTS,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(
        address, target.port, timeout=timeout, maxsize=1, retries=False
    )


def _read_body(
    raw: urllib3.BaseHTTPResponse, url: str, deadline: float, max_bytes: int
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise FetchError(
                    "timeout", f"{url} kept sending past the time limit; stopped."
                )
            # read1: what has arrived, so a server dripping bytes meets the deadline.
            chunk = raw.read1(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(
                    "too_large",
                    f"{url} sent more than {max_bytes // 1024:,} KiB; stopped reading.",
                )
            chunks.append(chunk)
    except HTTPError as exc:
        raise _transport_error(url, exc) from None


def _connect_error(url: str, exc: Exception) -> FetchError:
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return FetchError("timeout", f"Connecting to {url} timed out.")
    reason = _reason(exc)
    return FetchError("refused", f"Could not connect to {url}: {reason}.", (reason,))


def _transport_error(url: str, exc: HTTPError) -> FetchError:
    reason = _reason(exc)
    if isinstance(exc, SSLError):
        return FetchError(
            "tls", f"The TLS handshake with {url} failed: {reason}.", (reason,)
        )
    if isinstance(exc, ReadTimeoutError):
        return FetchError("timeout", f"{url} did not answer in time.")
    if isinstance(exc, (NewConnectionError, ConnectTimeoutError)):
        return _connect_error(url, exc)
    if isinstance(exc, ProtocolError):
        return FetchError(
            "broken", f"The connection to {url} broke: {reason}.", (reason,)
        )
    return FetchError("broken", f"The request to {url} failed: {reason}.", (reason,))


def _reason(exc: BaseException) -> str:
    # urllib3 wraps the socket error; the innermost one reads best.
    while exc.__context__ is not None and not str(exc).strip():
        exc = exc.__context__
    text = str(exc)
    return text.split(": ", 1)[-1] if text.startswith("<") else text
