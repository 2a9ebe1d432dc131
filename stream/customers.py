"""Customer enrollment helpers: what the app needs (and its QR code), CSV import, devices.

The app's enrollment payload is JSON ``{"v": 1, "customer_id", "identity_key",
"rotation_exponent"}``: with it the app advertises the customer's Eddystone-EIDs. It holds
the identity key, so the QR code is shown to the customer once and not kept.

CSV import columns (header row required; only ``customer_id`` is mandatory)::

    customer_id,identity_key,rotation_exponent,name,tier,sizes,wishlist,notes,
    assigned_associate,stores,visible,consent,consent_store

``sizes`` is ``dress=38;shoes=39``; ``wishlist``, ``stores``, ``visible`` and ``consent`` are
``;``-separated. Every row is checked whole; a bad row is reported with its line number
and reason and does not stop the others. Generated identity keys are returned so they can
reach the customers' apps.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from contracts.validation import describe_validation
from stream.exceptions import RegistryError
from stream.registry import CustomerProfile, Purpose, Registry, new_identity_key
from transport.redis import RedisClient

COLUMNS = (
    "customer_id",
    "identity_key",
    "rotation_exponent",
    "name",
    "tier",
    "sizes",
    "wishlist",
    "notes",
    "assigned_associate",
    "stores",
    "visible",
    "consent",
    "consent_store",
)


def app_payload(customer_id: str, identity_key: str, rotation_exponent: int) -> str:
    """What the customer's app needs to advertise the customer's EIDs."""
    return json.dumps(
        {
            "v": 1,
            "customer_id": customer_id,
            "identity_key": identity_key,
            "rotation_exponent": rotation_exponent,
        },
        separators=(",", ":"),
    )


def write_qr(payload: str, path: Path, scale: int = 6) -> None:
    """A QR code PNG of the payload (segno, error correction M)."""
    import segno

    segno.make(payload, error="m", micro=False).save(str(path), kind="png", scale=scale)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    customer_id: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    enrolled: list[str] = field(default_factory=list)
    generated_keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    rejected: list[RejectedRow] = field(default_factory=list)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def _row_profile(
    row: dict[str, str | None],
) -> tuple[CustomerProfile, list[Purpose], str | None, bool]:
    cid = (row.get("customer_id") or "").strip()
    if not cid:
        raise ValueError("customer_id is empty")
    sizes: dict[str, str] = {}
    for item in _split(row.get("sizes")):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"sizes item {item!r}: expected KEY=VALUE")
        sizes[k.strip()] = v.strip()
    try:
        purposes = [Purpose(p) for p in _split(row.get("consent"))]
    except ValueError as exc:
        raise ValueError(
            f"consent: {exc}; purposes are {', '.join(p.value for p in Purpose)}"
        ) from exc
    key = (row.get("identity_key") or "").strip().lower()
    generated = not key
    k_raw = (row.get("rotation_exponent") or "").strip()
    try:
        exponent = int(k_raw) if k_raw else 10
    except ValueError:
        raise ValueError(f"rotation_exponent {k_raw!r} is not an integer") from None
    try:
        profile = CustomerProfile(
            customer_id=cid,
            identity_key=key or new_identity_key(),
            rotation_exponent=exponent,
            name=(row.get("name") or "").strip() or None,
            tier=(row.get("tier") or "").strip() or None,
            sizes=sizes,
            wishlist=_split(row.get("wishlist")),
            notes=(row.get("notes") or "").strip() or None,
            assigned_associate=(row.get("assigned_associate") or "").strip() or None,
            stores=_split(row.get("stores")),
            visible_fields=_split(row.get("visible")),
        )
    except ValidationError as exc:
        raise ValueError(describe_validation(exc, "")) from exc
    store = (row.get("consent_store") or "").strip() or None
    return profile, purposes, store, generated


def header_problem(reader: csv.DictReader[str], columns: Sequence[str]) -> RejectedRow | None:
    """What is wrong with a CSV's header row for these ``columns`` (line 1), or None."""
    if reader.fieldnames is None or "customer_id" not in reader.fieldnames:
        return RejectedRow(1, "", "header row must name at least customer_id")
    unknown = sorted(set(reader.fieldnames) - set(columns))
    if unknown:
        return RejectedRow(
            1, "", f"unknown column(s) {', '.join(unknown)}; known: {', '.join(columns)}"
        )
    return None


async def import_csv(
    registry: Registry, text: str, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Enroll every good row; report the others with their line and reason. ``progress``
    is told the number of each row as it is done."""
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text))
    if (bad := header_problem(reader, COLUMNS)) is not None:
        report.rejected.append(bad)
        return report
    seen: set[str] = set()
    for n, row in enumerate(reader, start=1):
        if progress is not None:
            progress(n)
        line = reader.line_num
        cid = (row.get("customer_id") or "").strip()
        if None in row:
            report.rejected.append(RejectedRow(line, cid, "more fields than the header has"))
            continue
        try:
            profile, purposes, store, generated = _row_profile(row)
        except ValueError as exc:
            report.rejected.append(RejectedRow(line, cid, str(exc)))
            continue
        if cid in seen:
            report.rejected.append(RejectedRow(line, cid, "customer_id repeated in this file"))
            continue
        seen.add(cid)
        if await registry.get(cid) is not None:
            report.rejected.append(
                RejectedRow(line, cid, "already enrolled (forget or edit it first)")
            )
            continue
        await registry.enroll(profile, purposes, store)
        report.enrolled.append(cid)
        if generated:
            report.generated_keys[cid] = (profile.identity_key, profile.rotation_exponent)
    return report


async def register_device(
    redis: RedisClient, prefix: str, customer_id: str, device_id: str, public_key: str | None
) -> None:
    """Map an app device to the customer (stream) and, with its Ed25519 public key (base64),
    publish the key where the gateways' ingest reads it (``{prefix}devices:{device_id}``)."""
    registry = Registry(redis, prefix)
    await registry.register_device(customer_id, device_id)
    if public_key is not None:
        import base64
        import binascii

        try:
            raw = base64.b64decode(public_key, validate=True)
        except binascii.Error as exc:
            raise RegistryError(f"public key is not base64: {exc}") from exc
        if len(raw) != 32:
            raise RegistryError(f"public key must be 32 bytes (Ed25519), got {len(raw)}")
        await redis.hset(
            f"{prefix}devices:{device_id}", mapping={"public_key": public_key, "revoked": "0"}
        )
