"""The client's IP address, trusting X-Forwarded-For only from known proxies."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
)

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

UNKNOWN_CLIENT = "unknown"


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted: Sequence[Network],
) -> str:
    """The address to attribute a request to (for rate limits and sessions).

    ``peer`` is the socket's remote address; ``forwarded_for`` the
    X-Forwarded-For value (join repeated headers with ``","``). The header is
    read only when the peer is a trusted proxy: then the answer is its
    right-most entry that is not itself trusted, since every entry left of
    the last trusted hop may have been written by the client. Unparseable
    entries are skipped; if every entry is trusted, the left-most valid one.
    """
    peer_address = _parse(peer) if peer else None
    if peer_address is None:
        return peer if peer else UNKNOWN_CLIENT
    if not forwarded_for or not _is_trusted(peer_address, trusted):
        return str(peer_address)
    hops = [address for entry in forwarded_for.split(",") if (address := _parse(entry))]
    for address in reversed(hops):
        if not _is_trusted(address, trusted):
            return str(address)
    return str(hops[0]) if hops else str(peer_address)


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _parse(text: str) -> Address | None:
    """An address from a header entry or peer, or None for garbage.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:443``;
    IPv4-mapped IPv6 (from dual-stack sockets) becomes plain IPv4 so one
    client has one spelling.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            address = IPv6Address(str(address).partition("%")[0])
    return address
