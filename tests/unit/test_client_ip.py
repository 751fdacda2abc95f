from ipaddress import ip_network

from identity.entrypoints.client_ip import client_ip

# As IDENTITY_TRUSTED_PROXIES parses them (tests/unit/test_settings.py covers the parsing).
TRUSTED = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("fd00::/8"))


def test_untrusted_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_ip("203.0.113.5", "1.1.1.1", TRUSTED) == "203.0.113.5"
    assert client_ip("203.0.113.5", None, TRUSTED) == "203.0.113.5"
    assert client_ip("203.0.113.5", "1.1.1.1", ()) == "203.0.113.5"


def test_trusted_peer_without_header_is_the_client() -> None:
    assert client_ip("10.1.2.3", None, TRUSTED) == "10.1.2.3"
    assert client_ip("10.1.2.3", "", TRUSTED) == "10.1.2.3"


def test_trusted_peer_gives_the_rightmost_untrusted_hop() -> None:
    # The client wrote 6.6.6.6 itself; our proxies appended the rest.
    header = "6.6.6.6, 198.51.100.7, 10.0.0.2"
    assert client_ip("10.0.0.1", header, TRUSTED) == "198.51.100.7"


def test_ipv6_client_behind_trusted_ipv6_proxy() -> None:
    header = "2001:db8::dead, [2001:DB8:0:0::beef]:443, fd00::2"
    assert client_ip("fd00::1", header, TRUSTED) == "2001:db8::beef"
    assert client_ip("2001:db8::1", "198.51.100.7", TRUSTED) == "2001:db8::1"


def test_garbage_entries_are_skipped() -> None:
    assert client_ip("10.0.0.1", "198.51.100.7, unknown, , 10.0.0.9", TRUSTED) == "198.51.100.7"
    assert client_ip("10.0.0.1", "198.51.100.7:5555, <script>", TRUSTED) == "198.51.100.7"
    assert client_ip("10.0.0.1", "garbage, also garbage", TRUSTED) == "10.0.0.1"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert client_ip("127.0.0.1", "10.9.9.9, 10.0.0.2", TRUSTED) == "10.9.9.9"


def test_peer_spellings_are_normalised() -> None:
    # A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
    assert client_ip("::ffff:10.0.0.1", "198.51.100.7", TRUSTED) == "198.51.100.7"
    assert client_ip("::ffff:203.0.113.5", None, TRUSTED) == "203.0.113.5"
    assert client_ip("2001:DB8::0:1", None, ()) == "2001:db8::1"


def test_missing_peer() -> None:
    assert client_ip(None, "198.51.100.7", TRUSTED) == "unknown"
