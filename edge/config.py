"""Loading and checking the gateway's configuration.

Precedence, highest first: command-line overrides, ``PROXIMA_EDGE_*`` environment
variables, the TOML file, the defaults in :class:`edge.settings.EdgeSettings`. So a
systemd unit can keep the signing key in an environment file while the TOML file holds
the rest. The TOML file has flat keys, the field names (``enter_rssi = -70``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge.exceptions import ConfigError
from edge.settings import EdgeSettings

_SECRET = frozenset({"signing_key", "mqtt_password"})


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(settings)"
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown setting (see `proxima edge settings` for the list)"
        elif "input" in err and err["loc"] and path not in _SECRET:
            reason = f"{reason} (got {err['input']!r})"
        out.append((path, reason))
    return out


def load_settings(path: Path | None = None, **overrides: Any) -> EdgeSettings:
    """Settings from file + environment + overrides, or :class:`ConfigError` listing every error.

    ``None`` overrides are ignored (an option not given on the command line).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    source = str(path) if path else "settings"
    if path is None:
        try:
            return EdgeSettings(**given)
        except ValidationError as exc:
            raise ConfigError(source, _errors(exc)) from exc
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)  # for its error message with line and column
    except OSError as exc:
        raise ConfigError(source, [("(file)", f"cannot read: {exc.strerror}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("(file)", f"not valid TOML: {exc}")]) from exc

    class FileSettings(EdgeSettings):
        model_config = SettingsConfigDict(toml_file=path)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    try:
        loaded = FileSettings(**given)
    except ValidationError as exc:
        raise ConfigError(source, _errors(exc)) from exc
    return EdgeSettings.model_construct(
        **{k: getattr(loaded, k) for k in EdgeSettings.model_fields}
    )


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, environment variable, default, doc) for every setting, in declaration order."""
    prefix = EdgeSettings.model_config.get("env_prefix", "")
    rows = []
    for name, info in EdgeSettings.model_fields.items():
        default = "" if info.default is None else repr(info.default)
        rows.append((name, f"{prefix}{name}".upper(), default, info.description or ""))
    return rows
