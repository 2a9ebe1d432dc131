"""Pure parts of the ingest: the signature check, the nonce cache and the token bucket."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingest import (
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    NonceCache,
    RateLimiter,
    Rejection,
    sign_request,
    verify_signature,
)
from tests.kit.clock import FakeClock

KEY = Ed25519PrivateKey.generate()
DEVICE = "00112233445566778899aabbccddeeff"
PATH = "/v1/stores/demo-store/locations"


def signed(body: bytes) -> dict[str, str]:
    return sign_request(KEY, DEVICE, "POST", PATH, body, timestamp=1_767_261_600)


def check(headers: dict[str, str], body: bytes, **changed: str) -> None:
    fields = {
        "method": "POST",
        "path": PATH,
        "timestamp": headers[H_TIMESTAMP],
        "nonce": headers[H_NONCE],
        "device_id": DEVICE,
    }
    fields.update(changed)
    verify_signature(
        KEY.public_key(),
        fields["method"],
        fields["path"],
        fields["timestamp"],
        fields["nonce"],
        fields["device_id"],
        body,
        headers[H_SIGNATURE],
    )


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=200),
    field=st.sampled_from(["path", "timestamp", "nonce", "device_id", "method", "body"]),
)
def test_changing_any_signed_part_breaks_the_signature(body: bytes, field: str) -> None:
    headers = signed(body)
    check(headers, body)  # untouched: valid
    sent_body, changed = body, {}
    if field == "body":
        sent_body = body + b" "
    else:
        changed[field] = {
            "method": "PUT",
            "path": PATH + "x",
            "timestamp": "1767261601",
            "device_id": "ff" * 16,
        }.get(field, "another-nonce-value")
    with pytest.raises(Rejection) as info:
        check(headers, sent_body, **changed)
    assert (info.value.status, info.value.reason) == (401, "bad_signature")


@pytest.mark.parametrize("value", ["v2=abc", "v1=%%%", "v1=" + "A" * 86])
def test_malformed_signature_headers_are_bad_signature(value: str) -> None:
    headers = signed(b"{}") | {H_SIGNATURE: value}
    with pytest.raises(Rejection) as info:
        check(headers, b"{}")
    assert info.value.reason == "bad_signature"


def test_nonce_cache_forgets_after_ttl_and_refuses_when_full() -> None:
    clock = FakeClock(0.0)
    cache = NonceCache(ttl_s=600.0, max_items=2, clock=clock)
    assert cache.claim(DEVICE, "n1") == "ok"
    assert cache.claim(DEVICE, "n1") == "replayed"
    assert cache.claim("ff" * 16, "n1") == "ok"  # nonces are per device
    assert cache.claim(DEVICE, "n2") == "full"
    clock.t = 599.9
    assert cache.claim(DEVICE, "n1") == "replayed"
    clock.t = 600.0
    assert cache.claim(DEVICE, "n1") == "ok"
    cache.release(DEVICE, "n1")
    assert cache.claim(DEVICE, "n1") == "ok"


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 30),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate, burst, clock)
    allowed = 0
    for gap in gaps:
        clock.t += gap
        wait = limiter.take(DEVICE)
        if wait == 0.0:
            allowed += 1
        else:
            assert 0 < wait <= 1 / rate + 1e-9
    assert allowed <= burst + rate * clock.t + 1e-6


def test_token_bucket_retry_after_is_exact() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(2.0, 2, clock)
    assert limiter.take(DEVICE) == 0.0
    assert limiter.take(DEVICE) == 0.0
    assert limiter.take(DEVICE) == pytest.approx(0.5)
    clock.t = 0.5
    assert limiter.take(DEVICE) == 0.0
    limiter.refund(DEVICE)
    assert limiter.take(DEVICE) == 0.0
