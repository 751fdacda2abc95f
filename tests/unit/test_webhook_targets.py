"""The SSRF guard and the sender's own check on the addresses it connects to."""

from __future__ import annotations

import ipaddress

import pytest

from identity.adapters.webhook_http import AiohttpWebhookSender, PublicTargetGuard, is_public
from identity.application.ports import WebhookDeliveryError
from identity.domain.webhooks import WebhookUrlRefusedError


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_a_name_resolving_to_loopback_is_refused_unless_private_targets_are_allowed() -> (
    None
):
    with pytest.raises(WebhookUrlRefusedError):
        await PublicTargetGuard().check("http://localhost:8080/hook")
    await PublicTargetGuard(allow_private=True).check("http://localhost:8080/hook")


async def test_the_sender_refuses_a_private_address_at_connection_time() -> None:
    # Passed at creation (say the name pointed elsewhere then); refused when sending.
    sender = AiohttpWebhookSender(PublicTargetGuard(), timeout_seconds=2)
    try:
        for url in ("http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/"):
            with pytest.raises(WebhookDeliveryError, match="refused target"):
                await sender.post(url, b"{}", {"content-type": "application/json"})
    finally:
        await sender.close()
