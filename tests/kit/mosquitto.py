"""A private Mosquitto on a free loopback port: password file, ACL, persistence, outages.

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
from pathlib import Path

from tests.kit.require import unavailable
from transport.net import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
PASSWORD = "s3cret-pw"


def mosquitto_missing(*, passwd: bool = True) -> str | None:
    """Why a private Mosquitto (with ``passwd``: and its password tool) cannot run here."""
    if not Path(MOSQUITTO).exists() or (passwd and not Path(PASSWD).exists()):
        return "needs mosquitto and mosquitto_passwd (apt-get install mosquitto)"
    return None


def require_mosquitto(*, passwd: bool = True) -> None:
    """Skip the test when Mosquitto is missing; fail under `make test`."""
    if missing := mosquitto_missing(passwd=passwd):
        unavailable(missing)


def add_user(passwd_file: Path, user: str, password: str = PASSWORD) -> None:
    """Add ``user`` to a Mosquitto password file (made, owner-only, if missing)."""
    passwd_file.touch(mode=0o600, exist_ok=True)
    subprocess.run([PASSWD, "-b", str(passwd_file), user, password], check=True)


class Mosquitto:
    """A Mosquitto child running ``config`` on ``port``; :meth:`stop` then :meth:`start`
    bring it back on the same port (with persistence, with what it had queued)."""

    def __init__(self, work: Path, port: int, config: str) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.port = port
        self.conf = work / "mosquitto.conf"
        # As root, Mosquitto would switch to a user who cannot read the test's tmp folder.
        self.conf.write_text(f"user {getpass.getuser()}\n{config}")
        self.log = work / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, password: str = PASSWORD) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        return f"mqtt://{user.replace('/', '%2F')}:{password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> None:
        """Start it and return once it accepts connections."""
        with self.log.open("ab") as out:  # appended: one log across restarts
            proc = self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}: see {self.log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it gracefully (a persistent broker writes its queues out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def running(broker: Mosquitto) -> Iterator[Mosquitto]:
    """``broker`` started for the block, stopped after it."""
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def private_mosquitto(
    work: Path,
    *,
    users: Sequence[str] = (),
    acl: Path | None = None,
    persistent: bool = False,
) -> Iterator[Mosquitto]:
    """Run Mosquitto in ``work`` until the block ends; anonymous only when no users are
    given (each gets :data:`PASSWORD`). ``persistent``: sessions and queued messages
    survive :meth:`Mosquitto.stop`/:meth:`Mosquitto.start`."""
    require_mosquitto(passwd=bool(users))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [f"listener {port} 127.0.0.1"]
    if persistent:
        lines += [
            "persistence true",
            f"persistence_location {work}/",
            "max_queued_messages 100000",
        ]
    else:
        lines.append("persistence false")
    if users:
        passwd = work / "passwd"
        for user in users:
            add_user(passwd, user)
        lines += ["allow_anonymous false", f"password_file {passwd}"]
    else:
        lines.append("allow_anonymous true")
    if acl is not None:
        lines.append(f"acl_file {acl}")
    with running(Mosquitto(work, port, "\n".join(lines) + "\n")) as broker:
        yield broker
