"""``proxima edge ...``: run a gateway agent, check its configuration, list its settings.

Mounted by ``deploy.cli``. Sources are chosen by scheme (edge.source_registry);
``sim:NAME`` sources need the simulators, which production code never imports: they
register the scheme through the ``proxima.sources`` entry point (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from contracts.services import ServiceSettings
from contracts.trace import TraceHeader
from edge.config import describe_settings, load_settings
from edge.exceptions import ConfigError, EdgeError
from edge.fusion import gateway_settings
from edge.outbox import Outbox
from edge.settings import EdgeSettings
from edge.source_registry import make_source
from transport.cli import err, fail, out, verbose_logging

app = typer.Typer(help="The gateway agent.", no_args_is_help=True)


def parse_speed(value: str | None) -> float | None:
    """``max`` (or nothing) → None (as fast as possible); a positive number → N× real time."""
    if value is None or value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise typer.BadParameter(f"speed must be a number > 0 or 'max', got {value!r}") from None
    if speed <= 0:
        raise typer.BadParameter(f"speed must be > 0, got {value!r}")
    return speed


def from_trace_layout(
    settings: EdgeSettings, header: TraceHeader, *, zone: str | None, store: str | None
) -> EdgeSettings:
    """A replayed or simulated gateway as the trace's layout places it (as ``proxima replay``).

    Store, zone, RSSI offset and the layout's calibrated thresholds (edge.calibration) come
    from the trace; a ``--zone``/``--store`` that contradicts it is refused.
    """
    layout = header.layout
    if layout is None:
        return settings
    placed = next((gw for gw in layout.gateways if gw.id == settings.gateway_id), None)
    if placed is None:
        return settings
    if zone is not None and zone != placed.zone_id:
        raise EdgeError(
            f"--zone {zone!r} contradicts the trace: {placed.id} watches {placed.zone_id!r}"
        )
    if store is not None and store != header.store_id:
        raise EdgeError(f"--store {store!r} contradicts the trace's store {header.store_id!r}")
    # As replay places every gateway of the plan: its zone, offset, calibrated thresholds
    # and, for a door pair's gateways, their sightings' faster filter.
    tuned = gateway_settings(layout.model_dump(mode="json"), settings).get(placed.id, {})
    return settings.model_copy(update={**tuned, "store_id": header.store_id})


@app.command("run")
def run(
    config: Annotated[Optional[Path], typer.Option(help="TOML config file")] = None,  # noqa: UP045
    source: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="bleak | replay:PATH | sim:NAME[@SEED] (skeleton, boutique-rush, ...)"),
    ] = None,
    store: Annotated[Optional[str], typer.Option(help="store id")] = None,  # noqa: UP045
    gateway: Annotated[Optional[str], typer.Option(help="gateway id")] = None,  # noqa: UP045
    zone: Annotated[Optional[str], typer.Option(help="zone this gateway watches")] = None,  # noqa: UP045
    mqtt: Annotated[Optional[str], typer.Option(help="MQTT URL (default PROXIMA_MQTT)")] = None,  # noqa: UP045
    outbox: Annotated[Optional[Path], typer.Option(help="SQLite outbox file")] = None,  # noqa: UP045
    speed: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="replay pace: N× real time or 'max'"),
    ] = None,
    adapter: Annotated[Optional[str], typer.Option(help="BlueZ adapter, e.g. hci0")] = None,  # noqa: UP045
    http_port: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="serve /metrics and /healthz on this port"),
    ] = None,
    until_drained: Annotated[
        bool, typer.Option(help="exit 0 once a finite source is drained and the outbox is empty")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one gateway agent."""
    from edge.agent import EdgeAgent

    verbose_logging(verbose)
    try:
        settings = load_settings(
            config,
            source=source,
            store_id=store,
            gateway_id=gateway,
            zone_id=zone,
            mqtt_url=mqtt,
            outbox_path=outbox,
            speed=parse_speed(speed),
            bleak_adapter=adapter,
            http_port=http_port,
        )
        src = make_source(settings)
        if src.header is not None:  # a replayed or simulated gateway: the trace places it
            settings = from_trace_layout(settings, src.header, zone=zone, store=store)
    except EdgeError as exc:
        raise fail(str(exc)) from exc
    services = ServiceSettings()
    try:
        collectors: list[Any] = []
        extra = _ingest_service(settings.store_id, services.redis_prefix, collectors)
    except (ValidationError, EdgeError) as exc:
        raise fail(f"app-event ingest settings (PROXIMA_INGEST_*): {exc}") from exc
    if extra and settings.fused:
        # A fused gateway publishes evidence for the coordinator, not events.
        raise fail(
            "a fused gateway cannot host the app-event ingest: run it in the store's"
            " coordinator (proxima edge fuse with PROXIMA_INGEST_ENABLED=1)"
        )
    agent = EdgeAgent(
        settings,
        src,
        services.topics,
        mqtt_url=settings.mqtt_url or services.mqtt,
        services=extra,
    )
    agent.collectors = collectors

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run(until_drained=until_drained)

    try:
        asyncio.run(main())
    except* EdgeError as group:
        raise fail("; ".join(str(e) for e in group.exceptions), code=1) from None
    s = agent.stats
    out.print(
        f"edge: {s.adverts} adverts, {s.events} events, {s.events_published} published",
        highlight=False,
    )


@app.command("fuse")
def fuse(
    layout: Annotated[
        Path,
        typer.Option(
            help="the store plan: a layout JSON (zones, gateways with calibration) or a trace"
            " whose header holds one"
        ),
    ],
    config: Annotated[Optional[Path], typer.Option(help="TOML config file")] = None,  # noqa: UP045
    store: Annotated[Optional[str], typer.Option(help="store id")] = None,  # noqa: UP045
    gateway: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="the coordinator's own gateway id (its events' publisher; default: the"
            " config file's gateway_id, else fusion)"
        ),
    ] = None,
    mqtt: Annotated[Optional[str], typer.Option(help="MQTT URL (default PROXIMA_MQTT)")] = None,  # noqa: UP045
    outbox: Annotated[Optional[Path], typer.Option(help="SQLite outbox file")] = None,  # noqa: UP045
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a store's presence coordinator: its gateways' evidence in, the store's zone events
    out (gateways run with fused = true; docs/presence.md)."""
    from edge.coordinator import coordinator_agent
    from edge.fusion import fusable, fusion_roles, load_layout

    verbose_logging(verbose)
    try:
        plan, plan_store = load_layout(layout)
        settings = load_settings(
            config,
            store_id=store or (None if _configured(config, "store_id") else plan_store),
            # Never the settings' default id, an entrance gateway's.
            gateway_id=gateway or (None if _configured(config, "gateway_id") else "fusion"),
            mqtt_url=mqtt,
            outbox_path=outbox,
        )
    except EdgeError as exc:
        raise fail(str(exc)) from exc
    roles = fusion_roles(plan, settings)
    if not fusable(roles):
        raise fail(
            f"{layout}: fusion needs a calibrated entrance gateway (rssi_1m, path_loss_n,"
            " an outside zone with a rect) and another gateway"
        )
    services = ServiceSettings()
    try:
        collectors: list[Any] = []
        ingest = _ingest_service(settings.store_id, services.redis_prefix, collectors)
    except (ValidationError, EdgeError) as exc:
        raise fail(f"app-event ingest settings (PROXIMA_INGEST_*): {exc}") from exc
    agent, coordinator = coordinator_agent(
        settings.model_copy(update={"fused": False, "zone_id": roles[0].zone_id}),
        roles,
        services.topics,
        mqtt_url=settings.mqtt_url or services.mqtt,
        services=ingest,
    )
    agent.collectors = collectors

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    try:
        asyncio.run(main())
    except* EdgeError as group:
        raise fail("; ".join(str(e) for e in group.exceptions), code=1) from None
    c = coordinator.stats
    out.print(
        f"fusion: {c.evidence} evidence events, {c.rejected} rejected,"
        f" {agent.stats.events_published} events published",
        highlight=False,
    )


def _configured(config: Path | None, key: str) -> bool:
    """Whether the config file or the environment sets the setting ``key``: then it wins
    over what ``proxima-edge fuse`` would otherwise take (the plan's store id, the id
    ``fusion``). ``proxima gateways provision --coordinator`` writes both ids."""
    if os.environ.get(f"PROXIMA_EDGE_{key.upper()}"):
        return True
    if config is None:
        return False
    try:
        return key in tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return True  # load_settings names what is wrong with the file


def _ingest_service(
    store_id: str, redis_prefix: str, collectors: list[Any]
) -> list[Callable[[Outbox], Coroutine[Any, Any, None]]]:
    """The app-event ingest (PROXIMA_INGEST_ENABLED=1) as a producer into the agent's outbox;
    its counters join ``collectors`` (the agent's /metrics) once it serves."""
    from edge.ingest import IngestServer, IngestSettings
    from edge.ingest.metrics import IngestCollector

    ingest = IngestSettings()
    if not ingest.enabled:
        return []
    ingest.server_ssl_context()  # no TLS beyond loopback, or a bad certificate: fail before the scan

    async def serve(outbox: Outbox) -> None:
        server = IngestServer.from_settings(
            ingest, store_id=store_id, sink=outbox, redis_prefix=redis_prefix
        )
        collectors.append(IngestCollector(server.metrics, {"store": store_id}))
        await server.serve()

    return [serve]


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="TOML config file to validate")],
) -> None:
    """Validate a config file (with the environment's PROXIMA_EDGE_* applied); explain every error."""
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        err.print(f"[red]{exc.source}: {len(exc.errors)} error(s)[/red]", highlight=False)
        for path, reason in exc.errors:
            err.print(f"  {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    signing = f"signing with key {settings.signing_kid}" if settings.signing_kid else "unsigned"
    out.print(
        f"{file}: ok (store {settings.store_id}, gateway {settings.gateway_id},"
        f" zone {settings.zone_id}, source {settings.source}, {signing})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("settings")
def settings_table() -> None:
    """Every setting: name, environment variable, default and what it does."""
    table = Table(title="proxima edge settings (TOML key = name)")
    for column in ("name", "environment variable", "default", "doc"):
        table.add_column(column)
    for row in describe_settings():
        table.add_row(*row)
    out.print(table)


# --- proxima gateways config (mounted by deploy.cli under `gateways`) -------------------
config_app = typer.Typer(
    help="Gateways' live config (the retained config topic; edge/live.py, edge/rollout.py).",
    no_args_is_help=True,
)


def _config_payload(file: Path | None, sets: list[str] | None) -> dict[str, Any]:
    """A config from a JSON file and/or NAME=VALUE pairs (values read as JSON, else text)."""
    config: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise fail(f"{file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise fail(f"{file}: must be a JSON object of settings")
        config |= loaded
    for pair in sets or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"--set {pair!r}: use NAME=VALUE")
        try:
            config[name] = json.loads(value)
        except json.JSONDecodeError:
            config[name] = value
    if not config:
        raise fail("nothing to set: give --file and/or --set NAME=VALUE")
    return config


ConfigFile = Annotated[Path | None, typer.Option("--file", help="a JSON object of settings")]
ConfigSet = Annotated[
    list[str] | None,
    typer.Option("--set", help="NAME=VALUE (repeatable); VALUE as JSON if it parses"),
]


@config_app.command("get")
def config_get(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
) -> None:
    """Print a gateway's retained live config (nothing if it has none)."""
    from edge.rollout import get_config

    services = ServiceSettings()
    payload = asyncio.run(get_config(services.mqtt, services.topics, store, gateway))
    if payload:
        typer.echo(payload.decode("utf-8", "replace"))


@config_app.command("set")
def config_set(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
    file: ConfigFile = None,
    sets: ConfigSet = None,
) -> None:
    """Publish one gateway's live config (retained), without waiting for it to apply."""
    from edge.rollout import set_config, with_version

    config, version = with_version(_config_payload(file, sets))
    services = ServiceSettings()
    payload = json.dumps(config).encode()
    asyncio.run(set_config(services.mqtt, services.topics, store, gateway, payload))
    typer.echo(f"config {version} published to {store}/{gateway}", err=True)


@config_app.command("rollout")
def config_rollout(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateways: Annotated[str, typer.Option(help="the store's gateways, comma-separated")],
    file: ConfigFile = None,
    sets: ConfigSet = None,
    canary: Annotated[
        str | None, typer.Option(help="the gateway that gets it first (default: the first)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds each gateway has to apply it")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="the report as one JSON object")] = False,
) -> None:
    """Push a live config to a canary gateway, then, once its status shows it applied, to
    the rest; a gateway that rejects it or times out gets its previous config back, and
    a failed canary stops the rollout. Exit 1 unless every gateway applied it."""
    from edge.rollout import rollout

    config = _config_payload(file, sets)
    names = [g.strip() for g in gateways.split(",") if g.strip()]
    services = ServiceSettings()
    try:
        report = asyncio.run(
            rollout(
                services.mqtt, services.topics, store, names, config, canary=canary, timeout=timeout
            )
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "version": report.version,
                    "canary": report.canary,
                    "outcomes": report.outcomes,
                    "reasons": report.reasons,
                }
            )
        )
    else:
        for gateway, outcome in report.outcomes.items():
            reason = report.reasons.get(gateway, "")
            typer.echo(f"{store}/{gateway}: {outcome}" + (f" ({reason})" if reason else ""))
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """``proxima-edge``: the gateway's command (runs on the base install, no services deps);
    the same commands as ``proxima edge``."""
    app()
