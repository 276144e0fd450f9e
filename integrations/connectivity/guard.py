"""The SSRF guard: which addresses the probe may connect to.

The registry fetches URLs that outsiders typed in (the self-service form), so a
URL must never make it reach the cloud's metadata service, the database on the
same host or anything else on the internal network. The host is resolved once,
every address it resolves to is checked, and the client then connects to one of
those checked addresses (never resolving again), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot slip past.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even when private addresses are allowed: the instance metadata
# services of the large clouds hand out credentials to whoever asks.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


class Blocked(Exception):
    """The guard refused a URL; the message says why in plain words."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, with the addresses to connect to."""

    scheme: str
    host: str  # the name, for the Host header, SNI and certificate checks
    port: int
    addresses: tuple[str, ...]


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to (IPv4 and IPv6). Tests replace this."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the probe may not connect to this address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_global:
        return None
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        return "a reserved address"  # 240.0.0.0/4, which Python counts as private
    if address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif address.is_private:
        kind = "a private address"
    else:
        return "a reserved address"
    return None if allow_private else kind


def check_url(url: str, *, allow_private: bool | None = None) -> Target:
    """Resolve the URL's host and check every address; raise Blocked if any
    address is refused (a name with one bad address is refused whole)."""
    if allow_private is None:
        allow_private = settings.CONNECTIVITY_ALLOW_PRIVATE
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Blocked(f"{url} is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Blocked(f"{url} is not an http or https URL.")
    host = parts.hostname
    if not host:
        raise Blocked(f"{url} has no host name.")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise NameNotResolved(
                f"The name {host} does not resolve ({exc})."
            ) from None
    if not addresses:
        raise NameNotResolved(f"The name {host} resolves to no address.")
    for text in addresses:
        reason = refusal(ipaddress.ip_address(text), allow_private=allow_private)
        if reason:
            shown = host if host == text else f"{host} ({text})"
            hint = (
                ""
                if allow_private or reason == "a cloud metadata address"
                else " The registry refuses internal addresses unless the "
                "deployment sets CONNECTIVITY_ALLOW_PRIVATE=1 (for a registry "
                "inside the hospital network); otherwise run the check from your "
                "own browser."
            )
            raise Blocked(f"Refused to connect to {shown}: it is {reason}.{hint}")
    return Target(scheme=scheme, host=host, port=port, addresses=tuple(addresses))


class NameNotResolved(Exception):
    """DNS gave no address for the host: the archive is unreachable from here."""
