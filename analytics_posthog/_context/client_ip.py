"""Which address is the end user's: the peer's, or one the app's proxies forwarded.

``X-Forwarded-For`` and ``X-Real-IP`` are anyone's to send, so they count
only as far as the app says it sits behind proxies (the hooks'
``trusted_proxies`` setting); otherwise a client could put any address it
likes on the app's events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How the app is reached: ``0`` (directly, the default: forwarding headers are
#: ignored, since anyone can send them), a number of proxy hops in front of it,
#: or the proxies' addresses/networks.
Trust = int | tuple[IPNetwork, ...]


def parse_trust(value: None | bool | int | str | Iterable[str]) -> Trust:
    """The ``trusted_proxies`` setting: a hop count, or addresses/networks (a list or a comma-separated string)."""
    if value is None or value is False:
        return 0
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(
            "trusted_proxies must be a number of proxy hops (0 or more) or proxy addresses/networks, not %r"
            % (value,)
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isdigit():
            return int(value)
        value = value.split(",")
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value if part.strip())


def client_ip(
    peer: str | None, forwarded_for: str | None, real_ip: str | None, trust: Trust
) -> str | None:
    """The end user's address.

    The peer is the user unless the app said it sits behind proxies. With a
    hop count ``n``, the ``n``-th ``X-Forwarded-For`` entry from the right is
    the one the outermost trusted proxy saw. With proxy networks, the chain is
    walked from the peer leftwards while the hop is a trusted proxy, and the
    first untrusted address is the user (entries further left are whatever the
    client claimed). ``X-Real-IP`` stands in for a missing ``X-Forwarded-For``.
    """
    peer_ip = _ip(peer)
    if not trust or peer_ip is None:
        return peer_ip
    header = forwarded_for if forwarded_for and forwarded_for.strip() else real_ip
    chain = [entry.strip() for entry in header.split(",")] if header else []
    if isinstance(trust, int):
        return (_ip(chain[-trust]) if len(chain) >= trust else None) or peer_ip
    client = peer_ip
    for entry in reversed(chain):
        if not _trusted(client, trust):
            break
        hop = _ip(entry)
        if hop is None:
            break
        client = hop
    return client


def _trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


def _ip(value: str | None) -> str | None:
    """``value`` as a normalised IP address (ports and IPv6 brackets removed), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
