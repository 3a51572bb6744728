"""Which webhook destinations may be reached, and Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress

import pytest

from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.schedules import signing
from stepstream.server.core.schedules.destinations import DestinationPolicy, parse_allow, special_kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("fd00::1", "unique-local"),
        ("::ffff:127.0.0.1", "IPv6 form of loopback 127.0.0.1"),
        ("64:ff9b::a00:1", "IPv6 form of private 10.0.0.1"),
        ("2002:a00:1::", "IPv6 form of private 10.0.0.1"),
        ("0.0.0.0", "unspecified"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_special_addresses(address: str, kind: str | None) -> None:
    assert special_kind(ipaddress.ip_address(address)) == kind


async def test_allow_list_admits_named_addresses_and_ports_only() -> None:
    policy = DestinationPolicy(parse_allow(["127.0.0.1:8080", "10.0.0.0/8", "[::1]:9000"]))
    await policy.check("http://127.0.0.1:8080/hook", "webhook")
    await policy.check("https://10.9.9.9/hook", "webhook")
    await policy.check("http://[::1]:9000/", "webhook")
    for url in ("http://127.0.0.1:8081/", "http://localhost:8081/", "http://[::1]:9001/", "ftp://8.8.8.8/"):
        with pytest.raises(InvalidArgument) as refused:
            await policy.check(url, "spec.webhook")
        assert refused.value.field == "spec.webhook"


def test_bad_allow_list_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="not-an-address"):
        parse_allow(["not-an-address"])


def test_signatures_verify_with_each_secret_in_force() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"type": "run.succeeded"}'
    headers = signing.headers([new, old], "msg_1", 1_700_000_000, body)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    signatures = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    for secret in (old, new):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = base64.b64encode(
            hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
        ).decode()
        assert expected in signatures
