"""``proxima gateways provision``: one gateway's folder, placed by the store's plan.

The folder itself (keys, MQTT credentials, ACL block, ``edge.toml``, ``edge.env``) is
:mod:`stream.provision`'s. With ``--plan`` the gateway is also placed as ``proxima
replay`` places a plan's gateways (:func:`edge.fusion.gateway_settings`: zone, calibration
offset, calibrated thresholds, a door pair's faster sightings) and told to send evidence
(``fused = true``) where the plan can be fused; ``--coordinator`` provisions the store's
presence coordinator instead (``proxima-edge fuse``): its ACL block reads the store's
evidence and its folder carries the plan, written out whole. This lives in ``deploy``
because a plan may be a shipped simulator layout or a variant of one (``"extends"``),
which only the simulators can resolve; the gateway and the coordinator read a whole plan.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from contracts.services import ServiceSettings
from edge.exceptions import EdgeError
from edge.fusion import fusable, fusion_roles, gateway_settings, load_layout
from edge.settings import EdgeSettings
from simulators.exceptions import LayoutError
from simulators.layout import layout_names
from simulators.layout import load_layout as load_simulated_layout
from stream.cli import with_keyring
from stream.provision import (
    acl_block,
    set_acl_block,
    set_password_line,
    toml_lines,
    write_folder,
)
from transport.cli import err, fail

_DEFAULTS = EdgeSettings.model_construct()
"""The settings' defaults, not this admin host's PROXIMA_EDGE_* environment: what a plan
gives a gateway does not depend on the shell that provisions it."""


def read_plan(spec: str) -> dict[str, Any]:
    """A whole store plan from a plan file, a trace (its header's), a variant of a shipped
    layout (``"extends"``) or a shipped layout's name. Raises :class:`ValueError` naming
    what is wrong."""
    path = Path(spec)
    if path.is_file():
        try:
            layout, _ = load_layout(path)
        except EdgeError as exc:
            if "extends" not in path.read_text(encoding="utf-8", errors="replace"):
                raise ValueError(str(exc)) from exc
        else:
            if "extends" not in layout and "add_gateways" not in layout:
                # The store is the one provisioned: a plan's own store id would override
                # the coordinator's configured one (proxima-edge fuse reads both).
                return {k: v for k, v in layout.items() if k != "store_id"}
    elif path.suffix or "/" in spec:
        raise ValueError(f"{spec}: no such file")
    try:
        return load_simulated_layout(spec).trace_layout()
    except LayoutError as exc:
        shipped = ", ".join(layout_names())
        raise ValueError(f"{exc} (a plan file, a trace, or a shipped layout: {shipped})") from exc


def placed_settings(plan: dict[str, Any], gateway: str) -> dict[str, Any]:
    """What the plan sets for ``gateway`` in its ``edge.toml``: ``fused`` first, then the
    settings :func:`edge.fusion.gateway_settings` gives it. Raises :class:`ValueError` if
    the plan has no such gateway."""
    placed = gateway_settings(plan, _DEFAULTS)
    if gateway not in placed:
        known = ", ".join(sorted(placed)) or "none"
        raise ValueError(
            f"gateway {gateway!r} is not in the store plan (its gateways: {known}); the"
            " store's presence coordinator is provisioned with --coordinator"
        )
    values = {k: v for k, v in placed[gateway].items() if k != "gateway_id"}
    return {"fused": fusable(fusion_roles(plan, _DEFAULTS))} | values


def check_coordinator(plan: dict[str, Any], gateway: str) -> None:
    """Raises :class:`ValueError` unless ``gateway`` can be the coordinator fusing ``plan``."""
    if gateway in gateway_settings(plan, _DEFAULTS):
        raise ValueError(
            f"{gateway!r} is a gateway of the plan; the coordinator needs an id of its own"
            " (e.g. fusion)"
        )
    if not fusable(fusion_roles(plan, _DEFAULTS)):
        raise ValueError(
            "the plan cannot be fused: it needs a calibrated entrance gateway (rssi_1m,"
            " path_loss_n, an outside zone with a rect) and another gateway"
        )


def gateways_provision(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
    out: Annotated[Path, typer.Option(help="the gateway's folder (copy it to /etc/proxima/)")],
    mqtt_url: Annotated[
        str, typer.Option(help="the broker as the gateway reaches it (mqtts:// in a store)")
    ],
    ca: Annotated[
        Path | None, typer.Option(help="CA the gateway trusts for mqtts://, copied as ca.crt")
    ] = None,
    passwd: Annotated[
        Path | None, typer.Option(help="Mosquitto's password file: the line put in it")
    ] = None,
    acl: Annotated[
        Path | None, typer.Option(help="a Mosquitto ACL file: the gateway's block put in it")
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            help="the store plan (a plan or trace file, or a shipped layout's name): place"
            " the gateway by it (zone, calibration, thresholds, fused, a door pair's"
            " sighting filter), as proxima replay does"
        ),
    ] = None,
    coordinator: Annotated[
        bool,
        typer.Option(
            "--coordinator",
            help="provision the store's presence coordinator (proxima-edge fuse; needs"
            " --plan): its ACL block reads the store's evidence, its folder holds"
            " store-plan.json",
        ),
    ] = False,
) -> None:
    """Everything a gateway needs, in one folder: a signing key (in the keyring), MQTT
    credentials (Mosquitto password-file line), its ACL block, edge.toml and edge.env;
    with --passwd/--acl, the broker's files too (reload Mosquitto: SIGHUP)."""
    services = ServiceSettings()
    if ca is not None and not ca.is_file():
        raise fail(f"--ca {ca}: no such file")
    if coordinator and plan is None:
        raise fail("--coordinator needs --plan: the coordinator fuses by the store's plan")
    store_plan = placed = None
    if plan is not None:
        try:
            store_plan = read_plan(plan)
            if coordinator:
                check_coordinator(store_plan, gateway)
            else:
                placed = placed_settings(store_plan, gateway)
                toml_lines(placed)  # writable, before a key is issued for it
        except (ValueError, TypeError) as exc:
            raise fail(f"--plan: {exc}") from exc
    record = asyncio.run(with_keyring(services, lambda r: r.add(store, gateway)))
    done, line = write_folder(
        out,
        store=store,
        gateway=gateway,
        kid=record.kid,
        secret_hex=record.secret,
        mqtt_url=mqtt_url,
        topics=services.topics,
        namespace=services.namespace,
        ca_file=ca,
        placed=placed,
        plan=store_plan if coordinator else None,
        coordinator=coordinator,
    )
    if passwd is not None:
        set_password_line(passwd, line, done.username)
    if acl is not None:
        block = acl_block(services.topics, store, gateway, coordinator=coordinator)
        set_acl_block(acl, block, done.username)
    placed_note = ""
    if placed is not None:
        placed_note = "; placed: " + json.dumps(placed, separators=(",", ":"))
    elif coordinator:
        placed_note = "; the store's coordinator (store-plan.json beside edge.toml)"
    err.print(
        f"provisioned {store}/{gateway} in {out}: key {record.kid}, MQTT user {done.username}"
        + (f"; {passwd} and {acl or 'no ACL file'} updated (reload Mosquitto)" if passwd else "")
        + placed_note,
        highlight=False,
    )
