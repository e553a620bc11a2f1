"""Which address is the end user's: the peer, or what trusted proxies forwarded."""

from __future__ import annotations

import pytest

from analytics_posthog._context.client_ip import client_ip, parse_trust

PEER = "10.0.0.2"


@pytest.mark.parametrize(
    "trusted, forwarded_for, real_ip, expected",
    [
        (None, "6.6.6.6", "6.6.6.7", PEER),  # not behind a proxy: headers are anyone's to send
        (1, "6.6.6.6, 203.0.113.7", None, "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.9", None, "203.0.113.7"),
        (2, "203.0.113.7", None, PEER),  # fewer hops than configured: nothing to trust
        (1, None, "203.0.113.8", "203.0.113.8"),
        (1, "not-an-ip", None, PEER),
        (1, "[2001:db8::1]:443", None, "2001:db8::1"),
        (1, "203.0.113.7:5555", None, "203.0.113.7"),
        ("10.0.0.0/8", "6.6.6.6, 203.0.113.7, 10.0.0.9", None, "203.0.113.7"),
        ("10.0.0.0/8", "10.0.0.3, 10.0.0.9", None, "10.0.0.3"),
        ("192.168.0.1", "6.6.6.6", None, PEER),  # the peer is not a trusted proxy
    ],
)
def test_client_ip(trusted, forwarded_for, real_ip, expected):
    assert client_ip(PEER, forwarded_for, real_ip, parse_trust(trusted)) == expected


def test_parse_trust():
    assert parse_trust("2") == 2 and parse_trust(False) == 0
    assert [str(n) for n in parse_trust("127.0.0.1, 10.0.0.0/8")] == ["127.0.0.1/32", "10.0.0.0/8"]
    with pytest.raises(ValueError):
        parse_trust(True)
    with pytest.raises(ValueError):
        parse_trust("proxy.internal")
