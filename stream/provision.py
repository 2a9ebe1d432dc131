"""A gateway provisioned in one step, and deprovisioned in one (``proxima gateways
provision|deprovision``): what it needs written into one folder, and the broker's files
kept in step.

The folder (copy it to the gateway's ``/etc/proxima/``; deploy/edge/INSTALL.md):

- ``edge.toml``: store, gateway, broker URL, MQTT user, CA path, signing key id;
- ``edge.env``: the secrets (signing key, MQTT password), mode 0600, and the namespace
  (``PROXIMA_NAMESPACE``) when the topics carry one;
- ``mosquitto.passwd``: the gateway's line in Mosquitto's password-file form
  (``user:$7$101$salt$hash``, PBKDF2-SHA512 with 101 iterations and a 12-byte salt, as
  ``mosquitto_passwd`` writes it; Mosquitto 2 reads it);
- ``mosquitto.acl``: the gateway's own topics as an explicit ``user`` block, for a broker
  that does not use deploy/mosquitto/proxima.acl's patterns (which already cover it);
- ``ca.crt``: the CA the gateway trusts for ``mqtts://``, when one is given;
- ``store-plan.json``: for a store's presence coordinator, the plan it fuses by
  (``proxima-edge fuse --layout``).

With a store plan (``--plan``, resolved by ``deploy.provisioning``) a gateway's
``edge.toml`` also places it: its zone, calibration offset and calibrated thresholds,
``fused = true`` in a store the coordinator can fuse, and a door pair's faster sightings
(``fusion_sighting_q``), exactly as ``proxima replay`` places the plan's gateways. A
coordinator's ACL block also reads its store's evidence.

With ``--passwd``/``--acl`` the broker's own files are updated in place (the line and the
block replaced, never duplicated); deprovisioning revokes every active key of the
gateway, takes its line and block out of them and deletes the folder's files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.topics import Topics

PBKDF2_ITERATIONS = 101
"""What mosquitto_passwd 2.x writes (``$7$101$``): Mosquitto reads the count from the line."""
FILES = ("edge.toml", "edge.env", "mosquitto.passwd", "mosquitto.acl", "ca.crt", "store-plan.json")


def mqtt_username(store: str, gateway: str) -> str:
    """The username that carries a gateway's scope (deploy/mosquitto/proxima.acl)."""
    return f"{store}/gateways/{gateway}"


def password_line(username: str, password: str, salt: bytes | None = None) -> str:
    """``username:$7$101$<salt>$<hash>``, as ``mosquitto_passwd`` writes it."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"{username}:$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def acl_block(topics: Topics, store: str, gateway: str, *, coordinator: bool = False) -> str:
    """The gateway's own topics as a Mosquitto ACL ``user`` block; a store's presence
    coordinator also reads every gateway's evidence of its store (the per-store rule
    deploy/mosquitto/proxima.acl's patterns cannot say)."""
    base = topics.gateway_events(store, gateway).rsplit("/", 1)[0]
    store_gateways = base.rsplit("/", 1)[0]
    return "\n".join(
        [
            f"user {mqtt_username(store, gateway)}",
            f"topic write {base}/events",
            f"topic write {base}/status",
            f"topic write {base}/evidence",
            f"topic read {base}/config",
            *([f"topic read {store_gateways}/+/evidence"] if coordinator else []),
            "",
        ]
    )


def toml_lines(values: Mapping[str, Any]) -> str:
    """``key = value`` lines of the plain values a store plan gives a gateway; None is
    ``"off"`` (TOML has no null: a setting the plan turns off, such as a small zone's
    ``linger_db``)."""
    lines = []
    for key, value in values.items():
        if value is None:
            text = '"off"'
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)  # Python's int and float literals are TOML's
        elif isinstance(value, str):
            text = json.dumps(value)  # a TOML basic string is a JSON string
        else:
            raise TypeError(f"{key}: no TOML form for {type(value).__name__}")
        lines.append(f"{key} = {text}\n")
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class Provisioned:
    folder: Path
    kid: str
    username: str


def write_folder(
    folder: Path,
    *,
    store: str,
    gateway: str,
    kid: str,
    secret_hex: str,
    mqtt_url: str,
    topics: Topics,
    namespace: str = "",
    ca_file: Path | None = None,
    password: str | None = None,
    placed: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    coordinator: bool = False,
) -> tuple[Provisioned, str]:
    """Write the gateway's folder; returns what was written and the MQTT password line.

    ``placed``: the settings a store plan gives the gateway (written into ``edge.toml``);
    ``plan``: the store plan, written as ``store-plan.json`` (a coordinator's)."""
    folder.mkdir(parents=True, exist_ok=True)
    username = mqtt_username(store, gateway)
    password = password or secrets.token_urlsafe(24)
    ca_line = ""
    if ca_file is not None:
        shutil.copyfile(ca_file, folder / "ca.crt")
        ca_line = 'mqtt_ca_file = "/etc/proxima/ca.crt"\n'
    (folder / "edge.toml").write_text(
        "# Written by `proxima gateways provision`; secrets are in edge.env.\n"
        f'store_id = "{store}"\n'
        f'gateway_id = "{gateway}"\n'
        f'mqtt_url = "{mqtt_url}"\n'
        f'mqtt_username = "{username}"\n'
        f"{ca_line}"
        f'signing_kid = "{kid}"\n'
        + ("# Placed by the store plan (--plan): as proxima replay places it.\n" if placed else "")
        + toml_lines(placed or {}),
        encoding="utf-8",
    )
    if plan is not None:
        text = json.dumps(plan, indent=1) + "\n"
        (folder / "store-plan.json").write_text(text, encoding="utf-8")
    env = folder / "edge.env"
    # The namespace the ACL block was written for: the gateway's topics must carry it too.
    ns_line = f"PROXIMA_NAMESPACE={namespace}\n" if namespace else ""
    env.write_text(
        f"PROXIMA_EDGE_SIGNING_KEY={secret_hex}\nPROXIMA_EDGE_MQTT_PASSWORD={password}\n" + ns_line,
        encoding="utf-8",
    )
    os.chmod(env, 0o600)
    line = password_line(username, password)
    (folder / "mosquitto.passwd").write_text(line + "\n", encoding="utf-8")
    block = acl_block(topics, store, gateway, coordinator=coordinator)
    (folder / "mosquitto.acl").write_text(block, encoding="utf-8")
    return Provisioned(folder, kid, username), line


def set_password_line(passwd: Path, line: str | None, username: str) -> bool:
    """Put ``line`` in Mosquitto's password file in place of ``username``'s (None: take it
    out); True if the file changed."""
    before = passwd.read_text(encoding="utf-8").splitlines() if passwd.exists() else []
    after = [x for x in before if x.split(":", 1)[0] != username]
    if line is not None:
        after.append(line)
    if after == before:
        return False
    passwd.write_text("".join(f"{x}\n" for x in after), encoding="utf-8")
    return True


def set_acl_block(acl: Path, block: str | None, username: str) -> bool:
    """Put ``block`` in the ACL file in place of ``username``'s ``user`` block (None: take
    it out); True if the file changed. A block runs from its ``user`` line to the next
    blank line, ``user`` line or end of file."""
    lines = acl.read_text(encoding="utf-8").splitlines() if acl.exists() else []
    out: list[str] = []
    skipping = False
    for x in lines:
        if x.startswith("user "):
            skipping = x == f"user {username}"
        elif not x.strip():
            skipping = False
        if not skipping:
            out.append(x)
    if block is not None:
        if out and out[-1].strip():
            out.append("")
        out += block.rstrip("\n").splitlines()
    if out == lines:
        return False
    acl.write_text("".join(f"{x}\n" for x in out), encoding="utf-8")
    return True


def remove_folder_files(folder: Path) -> list[str]:
    """Delete what :func:`write_folder` wrote; the names deleted."""
    gone = []
    for name in FILES:
        path = folder / name
        if path.exists():
            path.unlink()
            gone.append(name)
    return gone
