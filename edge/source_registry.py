"""Scanner sources chosen by scheme: ``bleak``, ``replay:PATH``, ``sim:NAME[@SEED]``.

As faust chooses a table store by its URL's scheme, ``PROXIMA_EDGE_SOURCE`` (``--source``)
is ``SCHEME`` or ``SCHEME:ARGUMENT`` and the scheme picks a factory. ``bleak`` and
``replay`` are built in. Other installed packages add schemes through the
``proxima.sources`` entry point group (name: the scheme; object: a :class:`SourceScheme`):
the simulators add ``sim`` (pyproject.toml), so production code never imports them and a
gateway installed without them names the schemes it has instead of failing on an import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from edge.exceptions import EdgeError
from edge.sources import BleakSource, ScannerSource, TraceSource

if TYPE_CHECKING:
    from edge.settings import EdgeSettings

ENTRY_POINT_GROUP = "proxima.sources"


@dataclass(frozen=True, slots=True)
class SourceScheme:
    """One kind of source: ``usage`` is how a user writes it (``replay:PATH``); ``make``
    builds it from the text after ``SCHEME:`` and the gateway's settings, raising
    :class:`edge.exceptions.EdgeError` (or ValueError) that names what is wrong."""

    name: str
    usage: str
    make: Callable[[str, EdgeSettings], ScannerSource]
    takes_argument: bool = True


def _bleak(argument: str, settings: EdgeSettings) -> ScannerSource:
    return BleakSource(adapter=settings.bleak_adapter, scanning_mode=settings.bleak_scanning_mode)


def _replay(argument: str, settings: EdgeSettings) -> ScannerSource:
    return TraceSource.from_file(Path(argument), settings.gateway_id, settings.speed)


BUILT_IN: dict[str, SourceScheme] = {
    "bleak": SourceScheme("bleak", "bleak", _bleak, takes_argument=False),
    "replay": SourceScheme("replay", "replay:PATH", _replay),
}


def split_source(spec: str) -> tuple[str, str]:
    """``replay:/x.jsonl`` → (``replay``, ``/x.jsonl``); ``bleak`` → (``bleak``, ``""``)."""
    scheme, _, argument = spec.partition(":")
    return scheme, argument


def scheme_names() -> list[str]:
    """Every scheme this installation knows (built in, then registered; nothing imported)."""
    registered = [e.name for e in entry_points(group=ENTRY_POINT_GROUP)]
    return [*BUILT_IN, *(n for n in registered if n not in BUILT_IN)]


def scheme(name: str) -> SourceScheme:
    """The scheme called ``name``; EdgeError naming the installed ones if there is none."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            found = entry.load()
        except ImportError as exc:  # registered by a package whose dependencies are missing
            raise EdgeError(f"source scheme {name!r} ({entry.value}) cannot load: {exc}") from exc
        if not isinstance(found, SourceScheme):
            raise EdgeError(
                f"entry point {entry.value} ({ENTRY_POINT_GROUP}) is not a SourceScheme"
            )
        return found
    raise EdgeError(
        f"unknown source scheme {name!r}; this installation has {', '.join(scheme_names())}"
    )


def check_source(spec: str) -> str:
    """``spec`` if its scheme is installed and its argument is there when needed, else a
    ValueError naming the fix (EdgeSettings' validator; nothing is opened)."""
    name, argument = split_source(spec)
    names = scheme_names()
    if name not in names:
        raise ValueError(
            f"unknown scheme {name!r}: this installation has {', '.join(names)}"
            " (bleak, replay:PATH, sim:NAME[@SEED] where the simulators are installed)"
        )
    takes = BUILT_IN[name].takes_argument if name in BUILT_IN else True
    if takes and not argument:
        raise ValueError(f"{name} needs an argument after '{name}:'")
    if not takes and argument:
        raise ValueError(f"{name} takes no argument (got {spec!r})")
    return spec


def make_source(settings: EdgeSettings) -> ScannerSource:
    """The source ``settings.source`` names, built by its scheme's factory."""
    name, argument = split_source(settings.source)
    try:
        return scheme(name).make(argument, settings)
    except ValueError as exc:
        raise EdgeError(str(exc)) from exc
