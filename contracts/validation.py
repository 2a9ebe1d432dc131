"""The one way a pydantic ValidationError is told to a person: ``where: what`` per error,
``where`` the dotted location of the field (``3.kind``, ``sizes.dress``) or a name for the
whole input when the error is about it (``(payload)``, ``(body)``, ``(file)``...). Never
the input value (it may be a secret), never pydantic's documentation URL."""

from __future__ import annotations

from pydantic import ValidationError


def validation_errors(exc: ValidationError, whole: str = "(input)") -> list[tuple[str, str]]:
    """(where, message) for every error of ``exc``; ``whole`` names the input itself."""
    return [
        (".".join(str(p) for p in err["loc"]) or whole, str(err["msg"]))
        for err in exc.errors(include_url=False, include_input=False)
    ]


def describe_validation(
    exc: ValidationError, whole: str = "(input)", *, first: bool = False
) -> str:
    """``where: what`` for every error (``first``: only the first), joined by ``; ``."""
    errors = validation_errors(exc, whole)
    return "; ".join(f"{where}: {msg}" for where, msg in errors[: 1 if first else None])
