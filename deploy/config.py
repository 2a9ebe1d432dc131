"""One settings check over every settings class (``proxima config show|check``), and the
one-line messages every command gives for a bad setting or a service it cannot reach
(:func:`explain`, used by ``deploy.cli.main``)."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from contracts.services import redact_url
from deploy.docs import SETTINGS_CLASSES, _load

TOOL_VARIABLES = frozenset(
    {
        # make test / the test suite
        "PROXIMA_REQUIRE_BROWSER",
        "PROXIMA_REQUIRE_BLUEZ_MOCK",
        "PROXIMA_REQUIRE_TEST_TOOLS",
        "PROXIMA_TEST_ARTIFACTS",
        "PROXIMA_CHROMIUM",
        "PROXIMA_BENCH_LOG",
        # deploy/compose's .env: the services' MQTT passwords
        "PROXIMA_MQTT_BRIDGE_PASSWORD",
        "PROXIMA_MQTT_NOTIFIER_PASSWORD",
    }
)
"""``PROXIMA_*`` variables read by the project's scripts and tests, not by a settings class."""

SECRET_WORDS = ("password", "secret", "token", "seal_keys", "signing_key")


@dataclass(frozen=True, slots=True)
class Setting:
    variable: str
    value: str
    source: str  # "env" or "default"
    section: str


@dataclass(frozen=True, slots=True)
class Problem:
    variable: str
    message: str


def _prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def _variables() -> dict[str, tuple[str, type[BaseSettings], str]]:
    """Every variable a settings class reads: name → (section title, class, field)."""
    out: dict[str, tuple[str, type[BaseSettings], str]] = {}
    for title, spec in SETTINGS_CLASSES:
        cls = _load(spec)
        for name in cls.model_fields:
            out[f"{_prefix(cls)}{name.upper()}"] = (title, cls, name)
    return out


def _shown(field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if any(word in field.lower() for word in SECRET_WORDS) and text:
        return "***"
    return redact_url(text) if "://" in text else text


def settings_problems(
    env: Mapping[str, str],
) -> tuple[list[Setting], list[Problem]]:
    """Every setting's effective value (secrets redacted) and every problem: values a
    settings class refuses, and ``PROXIMA_*`` variables nobody reads (with the nearest
    valid name)."""
    known = _variables()
    problems: list[Problem] = []
    for name in sorted(n for n in env if n.startswith("PROXIMA_")):
        if name in known or name in TOOL_VARIABLES:
            continue
        near = difflib.get_close_matches(name, [*known, *TOOL_VARIABLES], n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        problems.append(Problem(name, f"unknown variable, read by nothing{hint}"))
    settings: list[Setting] = []
    for title, spec in SETTINGS_CLASSES:
        cls = _load(spec)
        try:
            instance: BaseSettings | None = cls()
        except ValidationError as exc:
            problems += [Problem(v, m) for v, m in describe_settings_error(exc)]
            instance = None
        for name in cls.model_fields:
            variable = f"{_prefix(cls)}{name.upper()}"
            raw = getattr(instance, name) if instance is not None else env.get(variable)
            source = "env" if variable in env else "default"
            settings.append(Setting(variable, _shown(name, raw), source, title))
    return settings, problems


def describe_settings_error(exc: ValidationError) -> list[tuple[str, str]]:
    """(variable, message) per error of a settings class, without the input (it may hold
    a password)."""
    prefix = ""
    for _title, spec in SETTINGS_CLASSES:
        if spec.rpartition(":")[2] == exc.title:
            prefix = _prefix(_load(spec))
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append((f"{prefix}{field.upper()}" if field else exc.title, message))
    return out


def explain(exc: BaseException) -> str | None:
    """One line for an error a user fixes in their settings or services, or None."""
    from aiokafka.errors import KafkaConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from contracts.services import ServiceSettings
    from transport.mqtt import MqttError

    if isinstance(exc, ValidationError) and exc.title in {
        spec.rpartition(":")[2] for _, spec in SETTINGS_CLASSES
    }:
        return "; ".join(f"{v}: {m}" for v, m in describe_settings_error(exc))
    try:
        services = ServiceSettings()
    except ValidationError:
        return None
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis at {redact_url(services.redis)} (PROXIMA_REDIS): {exc}"
    if isinstance(exc, KafkaConnectionError) or (
        isinstance(exc, TimeoutError) and "Kafka broker" in str(exc)
    ):
        return f"cannot reach Kafka at {redact_url(services.kafka)} (PROXIMA_KAFKA): {exc}"
    if isinstance(exc, MqttError):
        return f"cannot reach the MQTT broker at {redact_url(services.mqtt)} (PROXIMA_MQTT): {exc}"
    return None


config_app = typer.Typer(
    help="Every setting of every component: show them, check them.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object")]


def _print(settings: list[Setting], problems: list[Problem], as_json: bool, every: bool) -> None:
    if as_json:
        body: dict[str, Any] = {"problems": [asdict(p) for p in problems]}
        if every:
            body["settings"] = [asdict(s) for s in settings]
        sys.stdout.write(json.dumps(body) + "\n")
        return
    if every:
        section = None
        for s in settings:
            if s.section != section:
                section = s.section
                typer.echo(f"# {section}")
            mark = "" if s.source == "default" else "  (env)"
            typer.echo(f"{s.variable}={s.value}{mark}")
    for p in problems:
        typer.echo(f"problem: {p.variable}: {p.message}", err=True)


@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """Every setting with the value this environment gives it (secrets shown as ***)."""
    settings, problems = settings_problems(os.environ)
    _print(settings, problems, as_json, every=True)


@config_app.command("check")
def config_check(as_json: JsonOption = False) -> None:
    """Check this environment: values the settings refuse, and PROXIMA_* variables that
    nothing reads (misspelled?). Exit 2 if there is any problem."""
    settings, problems = settings_problems(os.environ)
    _print(settings, problems, as_json, every=False)
    if problems:
        raise typer.Exit(2)
    if not as_json:
        typer.echo(f"ok: {len(settings)} settings, no problems")
