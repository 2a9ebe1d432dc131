"""``proxima up`` (the whole system on this machine) and ``proxima bench NAME`` (every
package's benchmark, one table or JSON object). Orchestration across packages, so it lives
in ``deploy``; ``deploy.cli`` mounts both."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any, Optional

import typer

from contracts.services import ServiceSettings
from transport.cli import fail, out, working


# --- up ------------------------------------------------------------------------------
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
        raise fail(str(exc)) from exc

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
        raise fail(str(exc), 1) from exc
    raise typer.Exit(code)


# --- bench ---------------------------------------------------------------------------
def bench(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="beacons, notifier, ingest, edge, stream, stream-scale, pipeline, detection",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    seconds: Annotated[float, typer.Option(help="measuring time per figure")] = 2.0,
    events: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            help="events per run (stream: 100,000; stream-scale: 80,000, long enough that"
            " producing and the first fetch are a small part of its timing)",
            min=1000,
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="workers of the scale-out run (stream-scale)", min=2, max=8)
    ] = 2,
    seeds: Annotated[
        str, typer.Option(help="simulation seeds, comma-separated (detection)")
    ] = "21,22,23,24,25,26,27",
    scenario: Annotated[str, typer.Option(help="simulated scenario (detection)")] = "boutique-rush",
    layout: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="detection: play the scenario in this store layout (e.g. boutique-pair: a"
            " door pair)"
        ),
    ] = None,
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

    with working(f"proxima bench {name}"):
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
            from stream.bench import STREAM_EVENTS, run_stream_bench

            results = asyncio.run(run_stream_bench(events=events or STREAM_EVENTS))
        elif name == "stream-scale":
            from stream.bench import SCALE_EVENTS, run_scale_out_bench

            results = asyncio.run(
                run_scale_out_bench(events=events or SCALE_EVENTS, workers=workers)
            )
        elif name == "pipeline":
            from deploy.pipeline_bench import run_pipeline_bench

            results = asyncio.run(run_pipeline_bench())
        elif name == "detection":
            from simulators.cli import parse_shares
            from simulators.detection import run_detection_bench
            from simulators.exceptions import SimulatorError

            try:
                seed_list = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError as exc:
                raise fail(f"--seeds must be integers separated by commas: {seeds!r}") from exc
            try:
                population = (
                    {"device_classes": parse_shares(device_classes)} if device_classes else None
                )
                results = run_detection_bench(
                    seed_list, scenario, population=population, fusion=fusion, layout=layout
                )
            except (SimulatorError, ValueError) as exc:
                raise fail(str(exc)) from exc
        else:
            raise fail(
                f"unknown benchmark {name!r}; available: beacons, notifier, ingest, edge, stream, "
                "stream-scale, pipeline, detection"
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
