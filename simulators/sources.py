"""``sim:NAME[@SEED]``: a simulated scenario as a gateway's scanner source.

``proxima edge run --source sim:NAME`` (and ``proxima-edge``) find :data:`SIM` through the
``proxima.sources`` entry point (pyproject.toml; edge.source_registry), so edge never
imports the simulators and an installation without them says so instead of failing on an
import.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from contracts.trace import TraceHeader, TraceRecord, read_trace
from edge.exceptions import EdgeError
from edge.settings import EdgeSettings
from edge.source_registry import SourceScheme
from edge.sources import ScannerSource, SimulatorSource
from simulators.engine import LAYOUT_SCENARIOS, build_scenario
from simulators.exceptions import ScenarioError
from simulators.scenarios import SCENARIOS
from simulators.scenarios import scenario as make_scenario


def load_scenario(name: str) -> tuple[TraceHeader, Iterable[TraceRecord]]:
    """A scenario starting now: ``NAME`` is the skeleton or a layout scenario
    (boutique-rush, flagship-hour, ...; the gateway must be one of its layout's, e.g.
    ``gw-door``), ``@SEED`` an optional integer seed (7). Its lines are generated as the
    agent reads them. Raises :class:`ScenarioError` (a ValueError) naming what is wrong."""
    base, _, seed_text = name.partition("@")
    try:
        seed = int(seed_text) if seed_text else 7
    except ValueError:
        raise ScenarioError(f"sim:{name}: the seed after @ must be an integer") from None
    now = datetime.now(UTC).replace(microsecond=0)
    if base in LAYOUT_SCENARIOS:
        return read_trace(build_scenario(base, seed, now).lines())
    if base in SCENARIOS:
        sc = make_scenario(base, now, seed)
        return sc.header, sc.records
    known = ", ".join(sorted([*SCENARIOS, *LAYOUT_SCENARIOS]))
    raise ScenarioError(f"unknown scenario {base!r}; known: {known}")


def sim_source(name: str, settings: EdgeSettings) -> ScannerSource:
    """``sim:NAME[@SEED]`` for the gateway ``settings.gateway_id``, which must be one of the
    scenario's layout's."""
    header, records = load_scenario(name)
    gateways = [gw.id for gw in header.layout.gateways] if header.layout else []
    if gateways and settings.gateway_id not in gateways:
        raise EdgeError(
            f"sim:{name}: gateway {settings.gateway_id!r} is not in the scenario's layout; "
            f"use one of {', '.join(gateways)}"
        )
    return SimulatorSource(header, iter(records), settings.gateway_id, settings.speed)


SIM = SourceScheme("sim", "sim:NAME[@SEED]", sim_source)
"""The ``sim`` scheme (entry point ``proxima.sources``, name ``sim``)."""
