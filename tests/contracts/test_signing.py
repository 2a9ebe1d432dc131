"""Gateway batch signatures: what verifies, and the reason for each rejection."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from contracts.signing import (
    KID_PROPERTY,
    SIG_PROPERTY,
    TS_PROPERTY,
    GatewayKey,
    SignatureError,
    sign,
    verify,
    verify_message,
)

SECRET = bytes(range(32))
TOPIC = "proxima/v1/stores/s1/gateways/gw-door/events"
PAYLOAD = b'[{"event_id": "e1"}]'
KEY = GatewayKey(kid="gw-door-1", store_id="s1", gateway_id="gw-door", secret=SECRET)


def lookup(kid: str) -> GatewayKey | None:
    return {KEY.kid: KEY}.get(kid)


def check(props: dict[str, str], topic: str = TOPIC, payload: bytes = PAYLOAD) -> GatewayKey:
    return verify(topic, payload, props.items(), lookup, store_id="s1", gateway_id="gw-door")


def test_signature_is_hmac_sha256_of_domain_topic_time_and_payload() -> None:
    expected = hmac.new(
        SECRET,
        b"proxima-batch-v2\n" + TOPIC.encode() + b"\n1767261600123\n" + PAYLOAD,
        hashlib.sha256,
    ).hexdigest()
    assert sign(KEY.kid, SECRET, TOPIC, PAYLOAD, published_at=1767261600.123) == {
        KID_PROPERTY: "gw-door-1",
        TS_PROPERTY: "1767261600123",
        SIG_PROPERTY: f"v2={expected}",
    }


def test_the_signed_time_is_returned_and_cannot_be_changed() -> None:
    props = sign(KEY.kid, SECRET, TOPIC, PAYLOAD, published_at=1767261600.5)
    verified = verify_message(
        TOPIC, PAYLOAD, props.items(), lookup, store_id="s1", gateway_id="gw-door"
    )
    assert verified.published_at_ms == 1767261600500
    assert verified.key is KEY
    with pytest.raises(SignatureError, match="does not match"):
        check(props | {TS_PROPERTY: "1767261699999"})  # a replayer moving the time on
    with pytest.raises(SignatureError, match="without a valid proxima-ts"):
        check({k: v for k, v in props.items() if k != TS_PROPERTY})
    with pytest.raises(SignatureError, match="without a valid proxima-ts"):
        check(props | {TS_PROPERTY: "soon"})


def test_a_v1_signature_of_an_older_gateway_still_verifies_without_a_time() -> None:
    v1 = hmac.new(
        SECRET, b"proxima-batch-v1\n" + TOPIC.encode() + b"\n" + PAYLOAD, hashlib.sha256
    ).hexdigest()
    props = {KID_PROPERTY: KEY.kid, SIG_PROPERTY: f"v1={v1}"}
    verified = verify_message(
        TOPIC, PAYLOAD, props.items(), lookup, store_id="s1", gateway_id="gw-door"
    )
    assert verified.published_at_ms is None
    # A time added to a v1 signature is not signed, so it is not taken.
    with_ts = props | {TS_PROPERTY: "1767261600000"}
    assert (
        verify_message(
            TOPIC, PAYLOAD, with_ts.items(), lookup, store_id="s1", gateway_id="gw-door"
        ).published_at_ms
        is None
    )


def test_a_signed_batch_verifies_and_names_its_key() -> None:
    assert check(sign(KEY.kid, SECRET, TOPIC, PAYLOAD)) is KEY


@pytest.mark.parametrize(
    ("props", "payload", "reason"),
    [
        ({}, PAYLOAD, "unsigned message"),
        ({KID_PROPERTY: "gw-door-1"}, PAYLOAD, "unsigned message"),
        ({KID_PROPERTY: "bad kid!", SIG_PROPERTY: "v1=00"}, PAYLOAD, "malformed key id"),
        ({KID_PROPERTY: "gw-door-1", SIG_PROPERTY: "v9=00"}, PAYLOAD, "unsupported signature"),
        ({KID_PROPERTY: "other", SIG_PROPERTY: "v1=00"}, PAYLOAD, "unknown key id"),
        (sign(KEY.kid, SECRET, TOPIC, PAYLOAD), PAYLOAD + b" ", "does not match"),
        (sign(KEY.kid, b"x" * 32, TOPIC, PAYLOAD), PAYLOAD, "does not match"),
    ],
)
def test_rejections_say_why(props: dict[str, str], payload: bytes, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        check(props, payload=payload)


def test_a_batch_moved_to_another_gateways_topic_fails() -> None:
    other = "proxima/v1/stores/s1/gateways/gw-fitting/events"
    props = sign(KEY.kid, SECRET, other, PAYLOAD)
    with pytest.raises(SignatureError, match="belongs to s1/gw-door, not s1/gw-fitting"):
        verify(other, PAYLOAD, props.items(), lookup, store_id="s1", gateway_id="gw-fitting")
    with pytest.raises(SignatureError, match="does not match"):
        check(props)  # signed for the other topic, presented on this one


def test_a_revoked_key_is_refused() -> None:
    revoked = GatewayKey(kid="k", store_id="s1", gateway_id="gw-door", secret=SECRET, revoked=True)
    with pytest.raises(SignatureError, match="revoked key"):
        verify(
            TOPIC,
            PAYLOAD,
            sign("k", SECRET, TOPIC, PAYLOAD).items(),
            lambda _kid: revoked,
            store_id="s1",
            gateway_id="gw-door",
        )


def test_keys_check_themselves() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        GatewayKey(kid="k", store_id="s", gateway_id="g", secret=b"short")
    with pytest.raises(ValueError, match="key id"):
        GatewayKey(kid="no spaces", store_id="s", gateway_id="g", secret=SECRET)
