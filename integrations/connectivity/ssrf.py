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
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(a)
    for a in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2/32",  # AWS ECS task metadata (credentials)
        "169.254.170.23/32",  # AWS EKS Pod Identity agent
        "fd00:ec2::/32",  # AWS over IPv6 (fd00:ec2::254, fd00:ec2::23, ...)
        "100.100.100.200/32",  # Alibaba Cloud
    )
)

# Link-local (169.254.0.0/16, fe80::/10) stays refused whatever
# CONNECTIVITY_ALLOW_PRIVATE says. That setting exists for a registry inside
# the hospital network, whose archives sit on private (RFC 1918, ULA) or
# loopback addresses; no archive is reached over link-local, while every
# cloud puts its metadata and credential services there and keeps adding new
# addresses (ECS, EKS, ...): a list of them would always be one short.
# Site-local (fec0::/10) was deprecated in 2004: nothing legitimate uses it.
ALWAYS_REFUSED = frozenset(
    {
        "a cloud metadata address",
        "a link-local address",
        "a site-local address",
        "an unspecified address",
        "a multicast address",
        "a reserved address",
    }
)

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _ipv4_at(value: int, bits: list[tuple[int, int]]) -> ipaddress.IPv4Address:
    """The IPv4 address made of the given (first bit, count) slices of an IPv6
    address's 128 bits, counted from the left."""
    out = 0
    for first, count in bits:
        out = (out << count) | ((value >> (128 - first - count)) & ((1 << count) - 1))
    return ipaddress.IPv4Address(out)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address that traffic to ``address`` may end up at.

    A translator (NAT64, SIIT), a tunnel (6to4, Teredo) or the host's own
    stack (IPv4-mapped and -compatible) turns these into IPv4 connections, so
    ``64:ff9b::a9fe:a9fe`` is 169.254.169.254 in disguise.
    """
    value = int(address)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _SIIT or address in _NAT64:
        return [low32]
    if address in _IPV4_COMPATIBLE:
        # :: and ::1 are IPv6's own unspecified and loopback addresses.
        return [] if value <= 1 else [low32]
    if address in _NAT64_LOCAL:
        # RFC 6052: the operator picks the prefix length (/48 to /96 inside
        # this block) and bits 64-71 are skipped; judge every possible place.
        return [
            _ipv4_at(value, [(48, 16), (72, 16)]),  # /48
            _ipv4_at(value, [(56, 8), (72, 24)]),  # /56
            _ipv4_at(value, [(72, 32)]),  # /64
            low32,  # /96
        ]
    if address in _6TO4:
        return [_ipv4_at(value, [(16, 32)])]
    if address in _TEREDO:
        server = _ipv4_at(value, [(32, 32)])
        client = ipaddress.IPv4Address((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)
        return [server, client]
    return []


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
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the probe may not connect to this address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in embedded_ipv4(address):
            reason = refusal(inner, allow_private=allow_private)
            if reason:
                return f"{reason} ({inner}) inside an IPv6 address"
    if any(address in network for network in METADATA_NETWORKS):
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address in _SITE_LOCAL:
        return "a site-local address"
    if isinstance(address, ipaddress.IPv6Address) and embedded_ipv4(address):
        return None  # a translation of public IPv4 addresses, judged above
    if address.is_global:
        return None
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        return "a reserved address"  # 240.0.0.0/4, which Python counts as private
    if address.is_loopback:
        kind = "a loopback address"
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
                if allow_private or reason.split(" (")[0] in ALWAYS_REFUSED
                else " The registry refuses internal addresses unless the "
                "deployment sets CONNECTIVITY_ALLOW_PRIVATE=1 (for a registry "
                "inside the hospital network); otherwise run the check from your "
                "own browser."
            )
            raise Blocked(f"Refused to connect to {shown}: it is {reason}.{hint}")
    return Target(scheme=scheme, host=host, port=port, addresses=tuple(addresses))


class NameNotResolved(Exception):
    """DNS gave no address for the host: the archive is unreachable from here."""


# Names that only resolve inside a site's own network (RFC 6762 .local, RFC
# 8375 home.arpa, ICANN's .internal, and the suffixes hospitals commonly use).
_INSIDE_SUFFIXES = (
    ".local",
    ".localhost",
    ".internal",
    ".intranet",
    ".lan",
    ".corp",
    ".home.arpa",
)


def inside_network(url: str) -> str | None:
    """Why a stored DICOMweb URL can only be reached from inside a network
    (``"a private address"``, ``"a .local name"`` …), or None. From the URL
    alone, no DNS: said on the public form and the review page, where the
    registry cannot tell whether a public name points inside."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return "a loopback name"
        if "." not in host:
            return "a name without a domain"
        for suffix in _INSIDE_SUFFIXES:
            if host.endswith(suffix):
                return f"a {suffix} name"
        return None
    return refusal(address, allow_private=False)
