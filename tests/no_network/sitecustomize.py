"""Refuse outbound network at the socket level: only loopback and Unix sockets connect.

tests/conftest.py installs this in the pytest process and puts this folder on PYTHONPATH,
so every Python subprocess a test starts (the CLI, the server, schemathesis) imports it as
`sitecustomize` and is fenced in the same way. RAG_TEST_ALLOW_NETWORK=1 turns it off.
"""

from __future__ import annotations

import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def is_loopback(host: object) -> bool:
    if host in (None, "", b"", "localhost", b"localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(address: object) -> ConnectionRefusedError:
    return ConnectionRefusedError(f"outbound network is disabled in the tests: {address!r}")


def connect(self: socket.socket, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
        raise _refuse(address)
    return _connect(self, address)


def connect_ex(self: socket.socket, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
        raise _refuse(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    """Names other than localhost are not even looked up: a DNS query is traffic too."""
    if not is_loopback(host):
        try:
            ipaddress.ip_address(host.decode() if isinstance(host, bytes) else str(host))
        except ValueError:
            raise socket.gaierror(
                socket.EAI_NONAME, f"name lookup disabled in tests: {host}"
            ) from None
    return _getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo


if __name__ == "sitecustomize":
    install()
