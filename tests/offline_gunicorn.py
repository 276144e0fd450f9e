"""gunicorn configuration (``-c``) for the served test instances: each worker
reaches nothing but loopback.

Fuzzed data can give a server any archive URL, a public name or a public
address, and the connectivity checks then probe it. The app's own guard
already refuses internal addresses; here, below the app, every name resolves
to a documentation address (192.0.2.1, never routed, which the guard refuses:
no DNS query leaves the machine) and a connection to anything but loopback
fails at once, as an unreachable host does. The database (libpq) is not
Python's socket module and is unaffected.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

DOCUMENTATION_ADDRESS = "192.0.2.1"


def _is_address(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(address: Any) -> bool:
    try:
        return ipaddress.ip_address(address[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


def go_offline() -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_address(host):
            host = DOCUMENTATION_ADDRESS
        return real_getaddrinfo(host, port, *args, **kwargs)

    def refuse(sock: socket.socket, address: Any) -> bool:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        return inet and not _is_loopback(address)

    def connect(self: socket.socket, address: Any) -> None:
        if refuse(self, address):
            raise ConnectionRefusedError(f"test instance: {address[0]} is offline")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if refuse(self, address):
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def post_worker_init(worker: Any) -> None:  # gunicorn's hook
    go_offline()
