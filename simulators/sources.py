"""``sim:NAME[@SEED]``: a simulated scenario as a gateway's scanner source.

``proxima edge run --source sim:NAME`` (and ``proxima-edge``) find :func:`load_scenario`
through the ``proxima.scenarios`` entry point (pyproject.toml), so edge never imports the
simulators and an installation without them says so instead of failing on an import.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from contracts.trace import TraceHeader, TraceRecord, read_trace
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
