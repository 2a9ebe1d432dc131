"""Enroll a simulation's customers (and their app devices) into the registry, so replay and
scoring work end to end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from contracts.services import ServiceSettings


class Enrollable(Protocol):
    """What enrolling needs of a simulated customer (SimPerson and Customer both fit)."""

    @property
    def customer_id(self) -> str | None: ...
    @property
    def identity_key(self) -> bytes: ...
    @property
    def rotation_exponent(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def sizes(self) -> dict[str, str]: ...
    @property
    def wishlist(self) -> tuple[str, ...]: ...
    @property
    def assigned_associate(self) -> str | None: ...
    @property
    def visible(self) -> tuple[str, ...]: ...
    @property
    def consent(self) -> tuple[str, ...]: ...


async def enroll_all(people: Sequence[Enrollable], services: ServiceSettings | None = None) -> int:
    """Write every enrolled person's profile and consent; returns how many."""
    from stream.registry import CustomerProfile, Purpose, Registry
    from transport.redis import connect_redis

    services = services or ServiceSettings()
    r = connect_redis(services.redis)
    n = 0
    try:
        registry = Registry(r, services.redis_prefix)
        for person in people:
            if person.customer_id is None:
                continue
            profile = CustomerProfile(
                customer_id=person.customer_id,
                identity_key=person.identity_key.hex(),
                rotation_exponent=person.rotation_exponent,
                name=person.name,
                tier=person.tier,
                sizes=dict(person.sizes),
                wishlist=list(person.wishlist),
                assigned_associate=person.assigned_associate,
                visible_fields=list(person.visible),
            )
            await registry.enroll(profile, [Purpose(p) for p in person.consent])
            n += 1
    finally:
        await r.aclose()
    return n


class AppDevice(Protocol):
    """What registering a simulated customer's app device needs (population.Customer fits)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def device_key(self) -> bytes: ...
    @property
    def has_app(self) -> bool: ...


async def register_devices(
    customers: Sequence[AppDevice], services: ServiceSettings | None = None
) -> dict[str, bytes]:
    """Register every app user's device with its public key (as ``proxima customers device
    ID DEVICE --public-key B64`` does); returns device id → private key for the keys file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.devices import encode_public_key
    from stream.customers import register_device
    from transport.redis import connect_redis

    services = services or ServiceSettings()
    r = connect_redis(services.redis)
    keys: dict[str, bytes] = {}
    try:
        for c in customers:
            if not c.has_app:
                continue
            public = encode_public_key(
                Ed25519PrivateKey.from_private_bytes(c.device_key).public_key()
            )
            await register_device(r, services.redis_prefix, c.customer_id, c.device_id, public)
            keys[c.device_id] = c.device_key
    finally:
        await r.aclose()
    return keys
