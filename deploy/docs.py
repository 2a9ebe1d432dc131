"""The settings reference of docs/, generated from the settings classes (declared once)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

# (section title, "module:Class"): imported by name so the list reads as the docs do and a
# settings class that moves is caught by tests/docs (the import fails).
SETTINGS_CLASSES: tuple[tuple[str, str], ...] = (
    ("Services (every process)", "contracts.services:ServiceSettings"),
    ("Gateway agent (`proxima edge run`)", "edge.settings:EdgeSettings"),
    ("App-event ingest (`proxima ingest serve`)", "edge.ingest:IngestSettings"),
    ("Bridge and stream worker", "stream.settings:StreamSettings"),
    (
        "Bookings endpoint (`proxima stream bookings-api`)",
        "stream.bookings_api:BookingsApiSettings",
    ),
    ("Notifier and console (`proxima notifier serve`)", "notifier.settings:NotifierSettings"),
)


def _load(spec: str) -> type[BaseSettings]:
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, BaseSettings)):
        raise TypeError(f"{spec} is not a pydantic-settings class")
    return cls


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value: Any = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return f"`{value}`"
    try:
        return f"`{json.dumps(value, default=str)}`"
    except (TypeError, ValueError):
        return f"`{value!s}`"


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        text = " | ".join(str(arg) for arg in get_args(annotation))
    else:
        text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("|", "\\|")


def settings_reference() -> str:
    """Markdown: one table per settings class, a row per environment variable."""
    out = [
        "# Settings reference",
        "",
        "Every setting is an environment variable; this page is generated from the settings",
        "classes (`make docs`, or `proxima docs settings`), so it is what the code reads.",
        "",
    ]
    for title, spec in SETTINGS_CLASSES:
        cls = _load(spec)
        prefix = str(cls.model_config.get("env_prefix", ""))
        out += [f"## {title}", "", f"`{spec}`", ""]
        out += ["| variable | type | default | what it does |", "| --- | --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            doc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{prefix}{name.upper()}` | {_type(field)} | {_default(field)} | {doc} |")
        out.append("")
    return "\n".join(out)


docs_app = typer.Typer(
    help="Pages of docs/ that are generated from the code.", no_args_is_help=True
)


@docs_app.command("settings")
def docs_settings(
    out: Annotated[
        Path | None, typer.Option(help="write the page here (default: print it)")
    ] = None,
) -> None:
    """The settings reference (docs/operators/settings.md): every environment variable."""
    page = settings_reference() + "\n"
    if out is None:
        sys.stdout.write(page)
    else:
        out.write_text(page, encoding="utf-8")
