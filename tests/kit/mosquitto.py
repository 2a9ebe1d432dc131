"""A private Mosquitto on a free loopback port, with a password file and an ACL.

The machine's own broker (127.0.0.1:1883) is anonymous and shared; a test that needs
authentication, an ACL or to stop the broker starts one of these instead.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from transport.net import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
PASSWORD = "s3cret-pw"


def mosquitto_missing() -> str | None:
    """Why a private Mosquitto cannot run here, or None when it can."""
    if not Path(MOSQUITTO).exists() or not Path(PASSWD).exists():
        return "needs mosquitto and mosquitto_passwd (apt-get install mosquitto)"
    return None


@dataclass(frozen=True)
class PrivateBroker:
    port: int
    log: Path

    def url(self, user: str | None = None) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        return f"mqtt://{user.replace('/', '%2F')}:{PASSWORD}@127.0.0.1:{self.port}"


@contextmanager
def private_mosquitto(
    work: Path, *, users: Sequence[str] = (), acl: Path | None = None
) -> Iterator[PrivateBroker]:
    """Run Mosquitto in ``work`` until the block ends; anonymous only when no users are given."""
    missing = mosquitto_missing()
    if missing:
        raise RuntimeError(missing)
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        # As root, Mosquitto would switch to a user who cannot read the test's tmp folder.
        f"user {getpass.getuser()}",
        f"listener {port} 127.0.0.1",
        "persistence false",
    ]
    if users:
        passwd = work / "passwd"
        passwd.touch(mode=0o600)
        for user in users:
            subprocess.run([PASSWD, "-b", str(passwd), user, PASSWORD], check=True)
        lines += ["allow_anonymous false", f"password_file {passwd}"]
    else:
        lines.append("allow_anonymous true")
    if acl is not None:
        lines.append(f"acl_file {acl}")
    conf = work / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = work / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {port}: {log.read_text()}")
            time.sleep(0.05)
        yield PrivateBroker(port, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
