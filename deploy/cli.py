"""The ``proxima`` command line (DESIGN.md, Contract: command line)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from deploy.config import config_app
from deploy.docs import docs_app
from edge import cli as edge_cli
from edge.cli import app as edge_app
from edge.cli import config_app as gateway_config_app
from notifier.cli import associates_app, channels_app, routing_app
from simulators.cli import alerts_app
from simulators.cli import score as score_command
from stream.cli import (
    customers_device,
    customers_import,
    customers_rebuild_consent,
    customers_seal_keys,
    gateways_app,
    provision_keys,
    publish_consent,
)
from transport.logs import configure_logging
from transport.redis import redis_for

if TYPE_CHECKING:
    from contracts.trace import TraceProblems
    from simulators.scenarios import SimPerson

app = typer.Typer(
    name="proxima",
    help="Proxima: in-store proximity and associate alerts (edge, stream, notifier, simulators).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
)
stream_app = typer.Typer(help="The Faust stream processor.", no_args_is_help=True)
notifier_app = typer.Typer(help="The associate notifier.", no_args_is_help=True)
customers_app = typer.Typer(help="Enroll customers and manage their consent.", no_args_is_help=True)
contracts_app = typer.Typer(help="Wire contracts and their JSON Schemas.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from contracts.version import installed_version

        typer.echo(f"proxima {installed_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Proxima: in-store proximity and associate alerts (edge, stream, notifier, simulators)."""


app.add_typer(edge_app, name="edge")
app.add_typer(config_app, name="config")
app.add_typer(stream_app, name="stream")
app.add_typer(notifier_app, name="notifier")
notifier_app.add_typer(routing_app, name="routing")
app.add_typer(customers_app, name="customers")
app.add_typer(contracts_app, name="contracts")
app.add_typer(associates_app, name="associates")
app.add_typer(alerts_app, name="alerts")
app.command("score")(score_command)
app.add_typer(channels_app, name="channels")
app.add_typer(gateways_app, name="gateways")
gateways_app.add_typer(gateway_config_app, name="config")
customers_app.command("import")(customers_import)
customers_app.command("device")(customers_device)
customers_app.command("rebuild-consent")(customers_rebuild_consent)
customers_app.command("seal-keys")(customers_seal_keys)

out = Console()
err = Console(stderr=True)


def _logging(verbose: bool) -> None:
    configure_logging(logging.DEBUG if verbose else logging.INFO)


@contextlib.contextmanager
def _working(what: str) -> Iterator[None]:
    """A spinner with the time elapsed on a terminal (stderr) while ``what`` runs; nothing
    in a pipe or a log."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        bar.add_task(what, total=None)
        yield


def _trace_span(path: Path) -> float | None:
    """The time (s) of a trace's last line, read from its end (the trace may be GBs)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            t = json.loads(line).get("t")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(t, int | float):
            return float(t)
    return None


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


# --- up -------------------------------------------------------------------------------
@app.command()
def up(
    headless: Annotated[
        bool, typer.Option(help="no console account for the scenario (the console is served)")
    ] = False,
    duration: Annotated[Optional[float], typer.Option(help="stop after SECONDS")] = None,  # noqa: UP045
    scenario: Annotated[str, typer.Option(help="simulated traffic NAME, or 'none'")] = "skeleton",
    namespace: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="put every topic and key under NAME, alerts included (default "
            "PROXIMA_NAMESPACE; a scenario without one keeps its data in a scratch namespace "
            "removed at exit and alerts on the contract's topics)"
        ),
    ] = None,
) -> None:
    """Run the whole system on this machine and print alerts as they arrive.

    The associate console is served on http://127.0.0.1:8080/ (PROXIMA_NOTIFIER_HTTP_PORT),
    or on a free port when that one is taken; its address is printed once it answers.
    """
    from contracts.topics import Topics
    from deploy.launcher import up as run_up
    from deploy.services import ServiceUnavailable

    try:
        Topics(namespace or "")
    except ValueError as exc:
        raise _fail(str(exc)) from exc

    # soft_wrap: a line stays one line (an address or an env to copy is not cut in two).
    def alert(line: str) -> None:
        out.print("[bold green]ALERT[/bold green] ", end="")
        out.print(line, highlight=False, markup=False, soft_wrap=True)

    def info(line: str) -> None:
        out.print("[dim]proxima:[/dim] ", end="")
        out.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        code = asyncio.run(
            run_up(
                duration=duration,
                scenario=scenario,
                headless=headless,
                on_alert=alert,
                on_info=info,
                namespace=namespace,
            )
        )
    except ServiceUnavailable as exc:
        raise _fail(str(exc), 1) from exc
    raise typer.Exit(code)


# --- bridge, stream, notifier ---------------------------------------------------------
@app.command()
def bridge(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the MQTT → Kafka bridge until interrupted."""
    from stream.bridge import Bridge
    from stream.settings import StreamSettings

    _logging(verbose)
    services = ServiceSettings()
    if not services.kafka:
        raise _fail(
            "PROXIMA_KAFKA is not set: the bridge needs a Kafka broker (proxima up starts one)"
        )
    _run_forever(Bridge(services, StreamSettings()).run())


@stream_app.command("worker")
def stream_worker(
    loglevel: Annotated[str, typer.Option(help="crit|error|warn|info|debug")] = "info",
) -> None:
    """Run one Faust worker (validate → resolve → consent → visit → alert)."""
    from stream.app import run_worker

    if not ServiceSettings().kafka:
        raise _fail(
            "PROXIMA_KAFKA is not set: the worker needs a Kafka broker (proxima up starts one)"
        )
    run_worker(loglevel)


@notifier_app.command("serve")
def notifier_serve(
    host: Annotated[
        str | None, typer.Option(help="console address (default PROXIMA_NOTIFIER_HTTP_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="console port (default PROXIMA_NOTIFIER_HTTP_PORT)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Route, deliver and escalate alerts; serve the associate console and API."""
    from notifier.service import Notifier
    from notifier.settings import NotifierSettings

    _logging(verbose)
    services = ServiceSettings()
    if not services.kafka:
        raise _fail(
            "PROXIMA_KAFKA is not set: the notifier needs a Kafka broker (proxima up starts one)"
        )
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    settings = NotifierSettings(**overrides)
    out.print(
        f"notifier: console on http://{settings.http_host}:{settings.http_port}/", highlight=False
    )
    if settings.cookie_secure:
        out.print(
            "notifier: the session cookie is Secure: open the console through HTTPS (a TLS "
            "proxy) or http://localhost; PROXIMA_NOTIFIER_COOKIE_SECURE=false turns it off",
            highlight=False,
        )
    _run_forever(Notifier(services, settings=settings).run())


RECANCEL_S = 2.0
"""How often a service that is stopping is cancelled again until it has stopped."""


def _run_forever(coro: Coroutine[Any, Any, None]) -> None:
    import signal

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # A cancellation can be swallowed on its way through a client library (seen
            # once: a bridge in the test suite that never stopped after SIGTERM, its paho
            # thread still running, so it never reached its MQTT disconnect; the library
            # was not found). So until the task is done it is cancelled again every
            # RECANCEL_S; each service's shutdown is safe to interrupt (at least once: what
            # was not acked is delivered again).
            if not task.done():
                task.cancel()
                loop.call_later(RECANCEL_S, stop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


# --- replay & simulate ----------------------------------------------------------------
@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(help="trace file (JSON Lines, proxima-trace v1)")],
    speed: Annotated[
        str,
        typer.Option(help="N× real time, or 'max': all gateways on the trace's virtual clock"),
    ] = "max",
    device_keys: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help='JSON {"DEVICE_ID": "<Ed25519 private key, 32 raw bytes, base64>"}: app '
            "lines are signed with these and sent to an ingest on loopback (a device without "
            "a key: its lines are skipped and counted)"
        ),
    ] = None,
    fusion: Annotated[
        bool,
        typer.Option(
            help="the store's presence coordinator places people from every gateway's evidence"
            " (docs/presence.md); --no-fusion: each gateway decides its own zone alone"
        ),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Feed a trace through one edge agent per gateway, and its app lines through the
    app-event ingest, into the running system."""
    from contracts.exceptions import ContractError
    from contracts.trace import TraceProblems
    from edge.fusion import FUSION_GATEWAY_ID
    from simulators.exceptions import SimulatorError

    _logging(verbose)
    problems = TraceProblems(str(trace))
    app_summary: list[str] = []
    try:
        stats = asyncio.run(
            _replay(trace, edge_cli.parse_speed(speed), problems, device_keys, app_summary, fusion)
        )
    except (ContractError, OSError, SimulatorError) as exc:
        raise _fail(str(exc)) from exc
    fused = FUSION_GATEWAY_ID in stats
    for gw, (adverts, events) in sorted(stats.items()):
        # "N events published" counts what reaches the stream (scripts wait for those).
        what = (
            "evidence events to the store's coordinator"
            if fused and gw != FUSION_GATEWAY_ID
            else "events published"
        )
        out.print(f"{gw}: {adverts} adverts → {events} {what}", highlight=False)
    for line in app_summary:
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    # A trace from another tool may hold lines this one cannot read: say how many were
    # skipped, once, after the replay went on without them.
    if summary := problems.summary():
        err.print(summary, highlight=False, markup=False, soft_wrap=True)


async def _replay(
    trace: Path,
    speed: float | None,
    problems: TraceProblems | None = None,
    device_keys: Path | None = None,
    app_summary: list[str] | None = None,
    fusion: bool = True,
) -> dict[str, tuple[int, int]]:
    """Replay ``trace``; the lines it skips are recorded in ``problems`` (see TraceProblems),
    and what became of its app lines is appended to ``app_summary`` (simulators.app_replay).
    With ``fusion`` a store plan that can be fused (edge.fusion.fusable) gets its presence
    coordinator: the gateways send it evidence, it publishes the store's zone events."""
    from contracts.trace import PIPELINE_KINDS, AppRecord, TraceProblems, read_trace
    from edge.agent import EdgeAgent
    from edge.coordinator import coordinator_agent
    from edge.fusion import FUSION_GATEWAY_ID, fusable, fusion_roles, gateway_settings
    from edge.settings import EdgeSettings
    from edge.sources import ScannerSource
    from edge.trace_clock import TraceClock
    from simulators.app_replay import AppReplay, HeldSource, device_keys_path, load_device_keys
    from simulators.replay import ConsentReplay

    problems = problems if problems is not None else TraceProblems(str(trace))
    with trace.open("rb") as fh:
        first = fh.readline()
        header, _ = read_trace([first])
    if header.layout is None:
        raise OSError(f"{trace}: header has no layout; replay needs the gateways and their zones")
    app_keys = load_device_keys(device_keys) if device_keys is not None else {}
    layout_raw = json.loads(first).get("layout") or {}
    # Interior gateways whose layout carries a calibration (rssi_1m, path_loss_n, zone
    # rectangles) get thresholds that cover their zone (edge.calibration).
    defaults = EdgeSettings()
    per_gateway = gateway_settings(layout_raw, defaults)
    roles = fusion_roles(layout_raw, defaults) if fusion else []
    # Fusion needs a calibrated door and somewhere inside: other store plans are replayed
    # gateway by gateway (edge.fusion.fusable).
    fused = fusable(roles)
    services = ServiceSettings()
    agents = []
    # consent_revoke/grant app lines reach the registry at their place in the trace.
    consent = ConsentReplay(services, problems=problems)
    # Each replayed gateway signs with a key of its own from the keyring (reused across
    # replays), so a bridge that requires signatures accepts it.
    ids = [gw.id for gw in header.layout.gateways] + ([FUSION_GATEWAY_ID] if fused else [])
    keys = await provision_keys(services, [(header.store_id, g) for g in ids])
    # --speed max: one reader and one virtual clock for every agent (edge.trace_clock),
    # so the gateways publish in the trace's order and two replays decide the same.
    clock = None
    trace_file = None
    coordinator = fusion_agent = None
    hint = device_keys_path(trace)
    apps = AppReplay(
        header,
        layout_raw,
        app_keys,
        None,
        services,
        keys_hint=hint if device_keys is None and hint.exists() else None,
    )
    tmp = tempfile.TemporaryDirectory(prefix="proxima-replay-")
    if fused:
        key = keys[(header.store_id, FUSION_GATEWAY_ID)]
        fusion_settings = EdgeSettings(
            store_id=header.store_id,
            gateway_id=FUSION_GATEWAY_ID,
            zone_id=roles[0].zone_id,
            signing_kid=key.kid,
            signing_key=key.secret,
            # Stepped by the clock: publish each step at once, no batch to wait for.
            batch_max_latency_s=0.001 if speed is None else 0.1,
        )
        fusion_agent, coordinator = coordinator_agent(
            fusion_settings,
            roles,
            services.topics,
            mqtt_url=fusion_settings.mqtt_url or services.mqtt,
            outbox_path=Path(tmp.name) / "outbox-fusion.sqlite",
            clocked=speed is None,
            persistent=False,
            services=[apps.serve],
        )
    if speed is None:
        trace_file = trace.open("rb")
        clock_header, records = read_trace(trace_file, problems, kinds=PIPELINE_KINDS)
        app_ids: list[Any] = []  # the ingest's events since the last app line

        async def on_app(record: AppRecord, published: Sequence[Any]) -> None:
            # A consent change waits for the stream to have decided the app events too.
            await consent.on_app(record, [*published, *app_ids])
            app_ids[:] = await apps.on_app(record)

        clock = TraceClock(clock_header, records, on_app=on_app, coordinator=coordinator)
        apps.clock = clock.now
    # The store's app-event ingest runs in one gateway's agent, as on a real store: the
    # first entrance gateway's (its reader hands over the app lines; at a finite speed that
    # agent waits for the last one). In a fused store the gateways send evidence, so the
    # coordinator's agent, which publishes the store's events, serves it.
    kinds = {z.id: z.kind for z in header.layout.zones}
    host = next(
        (g.id for g in header.layout.gateways if kinds.get(g.zone_id) == "entrance"),
        header.layout.gateways[0].id,
    )
    apps.host = FUSION_GATEWAY_ID if fused else host
    fed = asyncio.Event()
    app_lines: asyncio.Queue[AppRecord | None] = asyncio.Queue()
    # A replay is a dev tool: each agent gets a fresh outbox that disappears afterwards.
    with tmp:
        for gw in header.layout.gateways:
            key = keys[(header.store_id, gw.id)]
            tuned: dict[str, Any] = dict(per_gateway.get(gw.id, {}))
            if clock is not None:  # the clock publishes a window at once: no batch to wait for
                tuned["batch_max_latency_s"] = 0.001
            settings = EdgeSettings(
                store_id=header.store_id,
                signing_kid=key.kid,
                signing_key=key.secret,
                fused=fused,
                **{"gateway_id": gw.id, "zone_id": gw.zone_id, **tuned},
            )
            src: ScannerSource
            if clock is not None:
                src = clock.source(gw.id)
            elif gw.id == host:
                src = HeldSource(consent.source(trace, gw.id, speed, app_lines.put_nowait), fed)
            else:
                src = consent.source(trace, gw.id, speed)
            agents.append(
                EdgeAgent(
                    settings,
                    src,
                    services.topics,
                    mqtt_url=settings.mqtt_url or services.mqtt,
                    outbox_path=Path(tmp.name) / f"outbox-{gw.id}.sqlite",
                    services=[apps.serve] if gw.id == host and not fused else (),
                )
            )

        async def feed() -> None:
            try:
                assert speed is not None
                await apps.feed(app_lines, speed)
            finally:
                fed.set()

        progress = (
            asyncio.create_task(_replay_progress(clock, _trace_span(trace)))
            if clock is not None and sys.stderr.isatty()
            else None
        )
        try:
            runs = [a.run(until_drained=True) for a in agents]
            driver = clock.run() if clock is not None else feed()
            if coordinator is None:
                await asyncio.gather(*runs, driver)
            else:
                await _replay_fused(runs, driver, fusion_agent, coordinator, agents, clock)
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
            consent.close()
            if trace_file is not None:
                trace_file.close()
    if app_summary is not None and (said := apps.summary()):
        app_summary.append(said)
    result = {a.settings.gateway_id: (a.stats.adverts, a.stats.events_published) for a in agents}
    if fusion_agent is not None:
        result[FUSION_GATEWAY_ID] = (0, fusion_agent.stats.events_published)
    return result


async def _replay_progress(clock: Any, span: float | None) -> None:
    """A bar of the trace time replayed so far (a terminal only; until cancelled)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} s of trace"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("trace", total=span)
        while True:
            bar.update(task, completed=max(0.0, clock.now() - clock.start))
            await asyncio.sleep(0.5)


async def _replay_fused(
    runs: Sequence[Coroutine[Any, Any, None]],
    driver: Coroutine[Any, Any, Any],
    fusion_agent: Any,
    coordinator: Any,
    agents: Sequence[Any],
    clock: Any | None,
) -> None:
    """Gateways publish evidence; the store's coordinator (subscribed first) publishes
    events: stepped by the clock at --speed max, live at a finite speed."""
    fusion_run = asyncio.ensure_future(fusion_agent.run())
    try:
        ready = asyncio.ensure_future(coordinator.ready.wait())
        await asyncio.wait({ready, fusion_run}, return_when=asyncio.FIRST_COMPLETED)
        if fusion_run.done():
            await fusion_run  # it failed before subscribing: say why
        await asyncio.gather(*runs, driver)
        if clock is None:
            await coordinator.finish(sum(a.stats.events_published for a in agents))
        await fusion_agent.outbox.wait_empty()
    finally:
        fusion_agent.stop()
        await fusion_run


@app.command()
def simulate(
    scenario: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="scenario NAME (skeleton, boutique-hour, flagship-day, ...)"),
    ] = None,
    layout: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="store layout NAME (boutique, flagship) or FILE.json"),
    ] = None,
    hours: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="hours to simulate from opening (layouts; default 1)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same trace")] = 7,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="write the trace here")] = None,  # noqa: UP045
    start: Annotated[
        str | None,
        typer.Option(
            help="trace start (ISO 8601, UTC); default now (skeleton), 2026-01-05 at opening (layouts)"
        ),
    ] = None,
    enroll: Annotated[
        bool,
        typer.Option(
            help="enroll the scenario's customers and register their app devices (Redis); "
            "with --out also write the devices' keys to TRACE.device-keys.json"
        ),
    ] = False,
    device_classes: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="CLASS=SHARE,... of enrolled customers instead of the layout's (classes: "
            "iphone_app, android_app, vip_tag, no_app), e.g. iphone_app=1"
        ),
    ] = None,
) -> None:
    """Write a simulated trace (and optionally enroll its customers)."""
    from contracts.trace import dump_line
    from simulators.cli import parse_shares, simulate_layout
    from simulators.scenarios import scenario as make_scenario

    begin = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    if begin is not None and begin.tzinfo is None:
        raise _fail("--start must carry a timezone, e.g. 2026-01-01T10:00:00Z")
    if layout is not None or (scenario is not None and scenario != "skeleton"):
        if layout is not None and scenario is not None:
            raise _fail("give --layout or --scenario, not both")
        simulate_layout(
            layout=layout,
            scenario=scenario,
            hours=hours,
            seed=seed,
            out_path=out_path,
            start=begin,
            enroll=enroll,
            device_classes=parse_shares(device_classes) if device_classes else None,
        )
        return
    if device_classes:
        raise _fail("--device-classes needs a layout or a layout scenario, not the skeleton")
    scenario = scenario or "skeleton"
    begin = begin or datetime.now(UTC)
    try:
        sc = make_scenario(scenario, begin, seed)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if enroll:
        asyncio.run(_enroll_people(sc.enrolled))
        out.print(f"enrolled {len(sc.enrolled)} customers", highlight=False)
    if out_path is not None:
        with out_path.open("w", encoding="utf-8") as fh:
            fh.write(dump_line(sc.header.model_dump(mode="json", exclude_none=True)) + "\n")
            for record in sc.records:
                fh.write(dump_line(record) + "\n")
        out.print(f"wrote {len(sc.records)} lines to {out_path}", highlight=False)


async def _enroll_people(people: Sequence[SimPerson]) -> None:
    from simulators.enroll import enroll_all

    await enroll_all(people)


# --- customers ------------------------------------------------------------------------
@customers_app.command("enroll")
def customers_enroll(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    identity_key: Annotated[
        str | None, typer.Option(help="32 hex digits; generated if omitted")
    ] = None,
    rotation_exponent: Annotated[int, typer.Option(help="EID rotation exponent K (0..15)")] = 10,
    consent: Annotated[Optional[list[str]], typer.Option(help="purpose granted (repeat)")] = None,  # noqa: UP045
    visible: Annotated[
        list[str] | None, typer.Option(help="field associates may see (repeat)")
    ] = None,
    name: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    tier: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    size: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE (repeat)")] = None,  # noqa: UP045
    wishlist: Annotated[Optional[list[str]], typer.Option(help="item (repeat)")] = None,  # noqa: UP045
    assigned_associate: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    store: Annotated[Optional[str], typer.Option(help="limit consent to this store")] = None,  # noqa: UP045
    qr: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="write a QR code PNG of what the app needs here (holds the key)"),
    ] = None,
) -> None:
    """Enroll a customer with their identity key and consent."""
    from pydantic import ValidationError

    from stream.registry import CustomerProfile, Purpose, new_identity_key

    generated = identity_key is None
    key = (identity_key or new_identity_key()).lower()
    sizes: dict[str, str] = {}
    for item in size or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise _fail(f"--size {item!r}: expected KEY=VALUE")
        sizes[k] = v
    try:
        purposes = [Purpose(p) for p in consent or []]
    except ValueError as exc:
        raise _fail(
            f"--consent: {exc}; purposes are {', '.join(p.value for p in Purpose)}"
        ) from exc
    try:
        profile = CustomerProfile(
            customer_id=customer_id,
            identity_key=key,
            rotation_exponent=rotation_exponent,
            name=name,
            tier=tier,
            sizes=sizes,
            wishlist=list(wishlist or []),
            assigned_associate=assigned_associate,
            stores=[store] if store else [],
            visible_fields=list(visible or []),
        )
    except ValidationError as exc:
        msgs = describe_validation(exc, "")
        raise _fail(f"customer {customer_id!r}: {msgs}") from exc

    async def go() -> None:
        from stream.registry import Registry

        services = ServiceSettings()
        async with redis_for(services) as r:
            await Registry(r, services.redis_prefix).enroll(profile, purposes, store)
            if purposes:
                _consent_published(await publish_consent(r, services))

    asyncio.run(go())
    result = {
        "customer_id": customer_id,
        "rotation_exponent": rotation_exponent,
        "consent": [p.value for p in purposes],
    }
    if generated:
        result["identity_key"] = key
    if qr is not None:
        from stream.cli import write_enrollment_qr

        write_enrollment_qr(qr, customer_id, key, rotation_exponent)
        result["qr"] = str(qr)
    out.print_json(json.dumps(result))


def _consent_published(why_not: str | None) -> None:
    if why_not is not None:
        err.print(
            f"consent saved; not yet on proxima.consent.v1 ({why_not}): "
            "the stream worker publishes it",
            highlight=False,
        )


@customers_app.command("revoke")
def customers_revoke(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    purpose: Annotated[str, typer.Argument(metavar="PURPOSE")],
    store: Annotated[Optional[str], typer.Option(help="revoke only for this store")] = None,  # noqa: UP045
) -> None:
    """Withdraw consent for a purpose; takes effect at once (the notifier withdraws the
    customer's open alerts there when it reads proxima.consent.v1)."""
    _set_consent(customer_id, purpose, False, store)


@customers_app.command("grant")
def customers_grant(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    purpose: Annotated[str, typer.Argument(metavar="PURPOSE")],
    store: Annotated[Optional[str], typer.Option(help="grant only for this store")] = None,  # noqa: UP045
) -> None:
    """Grant consent for a purpose."""
    _set_consent(customer_id, purpose, True, store)


def _set_consent(customer_id: str, purpose: str, granted: bool, store: str | None) -> None:
    from stream.exceptions import RegistryError
    from stream.registry import Purpose, Registry

    try:
        p = Purpose(purpose)
    except ValueError:
        raise _fail(
            f"unknown purpose {purpose!r}; purposes are {', '.join(x.value for x in Purpose)}"
        ) from None

    async def go() -> None:
        services = ServiceSettings()
        async with redis_for(services) as r:
            await Registry(r, services.redis_prefix).set_consent(customer_id, p, granted, store)
            _consent_published(await publish_consent(r, services))

    try:
        asyncio.run(go())
    except RegistryError as exc:
        raise _fail(str(exc), 1) from exc
    out.print(f"{customer_id}: {p.value} {'granted' if granted else 'revoked'}", highlight=False)


@customers_app.command("forget")
def customers_forget(customer_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Erase a customer everywhere: profile, consent, EID index, visits, and (through
    proxima.consent.v1) the notifier's alerts about them."""
    from stream.registry import Registry

    async def go() -> bool:
        services = ServiceSettings()
        async with redis_for(services) as r:
            forgotten = await Registry(r, services.redis_prefix).forget(customer_id)
            _consent_published(await publish_consent(r, services))
            return forgotten

    if not asyncio.run(go()):
        raise _fail(f"customer {customer_id!r} is not enrolled", 1)
    out.print(f"{customer_id}: forgotten", highlight=False)


@customers_app.command("show")
def customers_show(customer_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a customer's profile (without the identity key) and consent."""
    from stream.registry import Purpose, Registry

    async def go() -> dict[str, object] | None:
        services = ServiceSettings()
        async with redis_for(services) as r:
            reg = Registry(r, services.redis_prefix)
            profile = await reg.get(customer_id)
            if profile is None:
                return None
            data = profile.model_dump(mode="json", exclude={"identity_key"})
            data["consent"] = {p.value: await reg.has_consent(customer_id, p, "*") for p in Purpose}
            data["consent_records"] = await reg.consent_records(customer_id)
            data["devices"] = await reg.devices(customer_id)
            return data

    data = asyncio.run(go())
    if data is None:
        raise _fail(f"customer {customer_id!r} is not enrolled", 1)
    out.print_json(json.dumps(data))


# --- beacons --------------------------------------------------------------------------
beacons_app = typer.Typer(
    help="Decode advertisements and compute rotating identifiers.", no_args_is_help=True
)
app.add_typer(beacons_app, name="beacons")


@beacons_app.command("decode")
def beacons_decode(
    hex_data: Annotated[str, typer.Argument(metavar="HEX", help="raw AD structures")],
) -> None:
    """Decode one raw advertisement; print one JSON object per frame."""
    from beacons.adstruct import decode_raw
    from beacons.exceptions import BeaconError

    try:
        frames = decode_raw(hex_data)
    except (BeaconError, ValueError) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    for frame in frames:
        sys.stdout.write(json.dumps(frame.to_json_dict(), separators=(",", ":")) + "\n")


@beacons_app.command("eid")
def beacons_eid(
    identity_key: Annotated[str, typer.Option(help="32 hex digits")],
    rotation_exponent: Annotated[int, typer.Option(help="K, 0..15")],
    time: Annotated[int, typer.Option(help="time counter T: Unix seconds, truncated to 32 bits")],
) -> None:
    """Print the Eddystone-EID (16 lowercase hex digits) for a key, K and time."""
    from beacons.eid import compute_eid
    from beacons.exceptions import BeaconError

    try:
        key = bytes.fromhex(identity_key)
        eid = compute_eid(key, rotation_exponent, time)
    except (BeaconError, ValueError) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from exc
    sys.stdout.write(eid.hex() + "\n")


# --- stats ----------------------------------------------------------------------------
@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON array")] = False,
) -> None:
    """Counters of the running bridges and stream workers (totals since each started)."""
    import time

    from rich.table import Table

    from stream.settings import StreamSettings
    from transport.stats import as_json as stats_json
    from transport.stats import read_all

    services = ServiceSettings()

    async def read() -> Any:
        async with redis_for(services) as r:
            return await read_all(r, services.redis_prefix)

    try:
        snapshot = asyncio.run(read())
    except OSError as exc:
        raise _fail(f"cannot read {services.redis}: {exc}") from exc
    if as_json:
        sys.stdout.write(stats_json(snapshot) + "\n")
        return
    if not snapshot:
        every = StreamSettings().stats_interval_s
        out.print(f"no bridge or stream worker has reported (they write every {every:g} s)")
        return
    table = Table(title="proxima stats")
    for col in ("component", "instance", "age", "counter", "value"):
        table.add_column(col, justify="right" if col in ("age", "value") else "left")
    now = time.time()
    for (component, instance), (updated, counts) in sorted(snapshot.items()):
        age = f"{now - updated:.0f} s"
        for i, (name, value) in enumerate(sorted(counts.items()) or [("-", 0)]):
            first = i == 0
            table.add_row(
                component if first else "", instance if first else "", age if first else "",
                name, f"{value:,}",
            )  # fmt: skip
    out.print(table)


# --- bench ----------------------------------------------------------------------------
@app.command()
def bench(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="beacons, notifier, ingest, edge, stream, stream-scale, detection",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    seconds: Annotated[float, typer.Option(help="measuring time per figure")] = 2.0,
    events: Annotated[
        int, typer.Option(help="events per run (stream, stream-scale)", min=1000)
    ] = 20_000,
    workers: Annotated[
        int, typer.Option(help="workers of the scale-out run (stream-scale)", min=2, max=8)
    ] = 2,
    seeds: Annotated[
        str, typer.Option(help="simulation seeds, comma-separated (detection)")
    ] = "21,22,23,24,25,26,27",
    scenario: Annotated[str, typer.Option(help="simulated scenario (detection)")] = "boutique-rush",
    fusion: Annotated[
        bool,
        typer.Option(
            help="detection: the store's coordinator decides, as replay runs it (docs/presence.md);"
            " --no-fusion: each gateway alone"
        ),
    ] = True,
    device_classes: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="detection: CLASS=SHARE,... instead of the layout's (e.g."
            " android_app=0.9,vip_tag=0.1: the advertising classes this bench reads)"
        ),
    ] = None,
) -> None:
    """Run a benchmark and print a table (or JSON)."""
    from rich.table import Table

    with _working(f"proxima bench {name}"):
        if name == "beacons":
            from beacons.bench import run_beacons_bench

            results = run_beacons_bench(seconds)
        elif name == "edge":
            from edge.bench import run_edge_bench

            results = run_edge_bench(seconds)
        elif name == "notifier":
            results = _bench_notifier()
        elif name == "ingest":
            from edge.ingest_bench import run_ingest_bench

            results = run_ingest_bench(seconds)
        elif name == "stream":
            from stream.bench import run_stream_bench

            results = asyncio.run(run_stream_bench(events=events))
        elif name == "stream-scale":
            from stream.bench import run_scale_out_bench

            results = asyncio.run(run_scale_out_bench(events=events, workers=workers))
        elif name == "detection":
            from simulators.cli import parse_shares
            from simulators.detection import run_detection_bench
            from simulators.exceptions import SimulatorError

            try:
                seed_list = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError as exc:
                raise _fail(f"--seeds must be integers separated by commas: {seeds!r}") from exc
            try:
                population = (
                    {"device_classes": parse_shares(device_classes)} if device_classes else None
                )
                results = run_detection_bench(
                    seed_list, scenario, population=population, fusion=fusion
                )
            except (SimulatorError, ValueError) as exc:
                raise _fail(str(exc)) from exc
        else:
            raise _fail(
                f"unknown benchmark {name!r}; available: beacons, notifier, ingest, edge, stream, "
                "stream-scale, detection"
            )
    if as_json:
        sys.stdout.write(json.dumps(results) + "\n")
        return
    table = Table(title=f"proxima bench {name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if key != "by_class":
            table.add_row(key, _fmt(value))
    out.print(table)
    if "by_class" in results:
        from simulators.cli import class_table

        out.print(class_table(results, f"proxima bench {name}, per device class"))


def _bench_notifier() -> dict[str, Any]:
    """The notifier bench needs Kafka: PROXIMA_KAFKA, or an embedded broker for the run."""
    from deploy.embedded_kafka import EmbeddedKafka
    from notifier.bench import run_notifier_bench

    services = ServiceSettings()
    if services.kafka:
        return run_notifier_bench(services.kafka)
    broker = EmbeddedKafka(log_path=None)
    asyncio.run(broker.start())
    try:
        return run_notifier_bench(broker.url)
    finally:
        broker.stop()


def _fmt(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:  # NaN: the figure could not be measured here
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"


# --- contracts ------------------------------------------------------------------------
@contracts_app.command("schema")
def contracts_schema(
    out_dir: Annotated[
        Path, typer.Option("--out", help="directory for the *.schema.json files")
    ] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every wire model."""
    from contracts.schema import write_schemas

    for path in write_schemas(out_dir):
        out.print(str(path), highlight=False)


# --- topics ---------------------------------------------------------------------------
topics_app = typer.Typer(help="Kafka topics of the contract.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("ensure")
def topics_ensure(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="partitions per topic (default PROXIMA_STREAM_PARTITIONS)"),
    ] = None,
    replication: Annotated[
        int, typer.Option(min=1, help="replication factor (3 on a production cluster)")
    ] = 1,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker")] = 60.0,
) -> None:
    """Create every contract topic and the stream worker's table changelogs that do not
    exist yet (idempotent; run before the services).

    Faust refuses a table whose changelog partition count differs from its source
    topic's, and a topic the broker auto-creates takes the broker's default, so a
    deployment creates the topics first (compose's init-topics, the k8s Job). The
    changelogs ({app id}-{table}-changelog) and the consent topic are compacted; a
    changelog takes the events topic's partition count and replication factor as they
    are on the broker (which may differ from --partitions/--replication on an upgrade).
    The alerts and visits topics, which name customers, keep records for
    PROXIMA_STREAM_KAFKA_RETENTION_S (7 days), also set on topics that already exist.
    """
    from stream.settings import StreamSettings
    from stream.tables import ensure_changelogs
    from transport.kafka import (
        TopicShape,
        describe_topics,
        ensure_topics,
        kafka_security,
        wait_for_broker,
    )

    services = ServiceSettings()
    if not services.kafka:
        raise _fail("PROXIMA_KAFKA is not set: name the broker to create the topics on")
    settings = StreamSettings()
    count = partitions or settings.partitions

    async def run() -> dict[str, TopicShape]:
        security = kafka_security(services)
        await wait_for_broker(services.kafka_bootstrap, timeout=timeout, security=security)
        names = services.topics.all_kafka
        not_set = await ensure_topics(
            services.kafka_bootstrap,
            names,
            count,
            replication,
            retention_ms=settings.kafka_retention_s * 1000,
            security=security,
        )
        for name in not_set:
            err.print(
                f"[yellow]warning:[/yellow] {name}: the broker did not take the retention "
                f"(PROXIMA_STREAM_KAFKA_RETENTION_S={settings.kafka_retention_s}); "
                "set it with the broker's tools",
                highlight=False,
            )
        names += await ensure_changelogs(services, settings)
        shapes = await describe_topics(services.kafka_bootstrap, list(names))
        return {name: shapes[name] for name in names if name in shapes}

    for name, shape in asyncio.run(run()).items():
        out.print(
            f"{name} ({shape.partitions} partitions, replication {shape.replication})",
            highlight=False,
        )


app.add_typer(docs_app, name="docs")


def main() -> None:
    """``proxima``: a bad setting or a service out of reach is one line naming the setting
    (never a traceback, never a password) and exit 2 (deploy.config.explain)."""
    try:
        app()
    except Exception as exc:
        from deploy.config import explain

        line = explain(exc)
        if line is None:
            raise
        sys.stderr.write(f"proxima: {line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
    sys.exit(0)
