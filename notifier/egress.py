"""Where webhooks and pushes may connect: public addresses only, checked on the socket.

The check runs in the socket factory aiohttp calls for each address it is about to
connect to, after DNS resolution: a name that resolves (or re-resolves, DNS rebinding) to
loopback, a private network or the cloud metadata address is refused like an IP literal.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import aiohttp
from aiohappyeyeballs import AddrInfoType

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(OSError):
    """A webhook or push would connect to an address that is not public."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"refused: {address} is {reason}, not a public address")
        self.address = address
        self.reason = reason


def _embedded_ipv4(ip: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def non_public_reason(ip: Address) -> str | None:
    """Why ``ip`` must not be reached from a webhook, or None for a public address."""
    ip = _embedded_ipv4(ip)
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None if ip.is_global else "not globally routable"


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Public addresses, plus the networks an operator allows (an internal relay)."""

    allowed: tuple[Network, ...] = ()

    def check(self, host: str) -> None:
        """Raise :class:`BlockedAddress` unless ``host`` (an IP address) may be reached."""
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            raise BlockedAddress(host, "not an IP address") from None
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return
        reason = non_public_reason(ip)
        if reason is not None:
            raise BlockedAddress(str(ip), reason)

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's hook for making the socket of each resolved address it tries."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system's trusted CAs, plus those in ``ca_file`` (an internal CA) if given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def client_session(
    policy: EgressPolicy = EgressPolicy(), *, ca_file: str = ""
) -> aiohttp.ClientSession:
    """The HTTP client of webhooks and pushes: checked addresses, no proxy from the
    environment (it would connect for us, unchecked)."""
    connector = aiohttp.TCPConnector(socket_factory=policy.socket_factory, ssl=tls_context(ca_file))
    return aiohttp.ClientSession(connector=connector, trust_env=False)
