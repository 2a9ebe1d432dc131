"""Notifier fixtures: real Redis per test namespace, a clock tests move by hand."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contracts.models import Alert
from contracts.services import ServiceSettings
from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.metrics import Metrics
from notifier.settings import NotifierSettings
from notifier.web.app import Console
from stream.bookings import Bookings
from stream.bookings_api import BookingsApi, BookingsApiSettings
from stream.registry import Registry
from tests.factories import alert_dict
from tests.kit.clock import FakeUtcClock
from tests.kit.customers import make_customer
from tests.kit.services import redis_dropped_after

# Cheap argon2 parameters: the tests check behaviour, not the hash's cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class CountingHasher:
    """Our ``Hasher`` interface over the fast argon2 one: counts the checks, and how many
    run at once (each held ``pause_s`` in its thread, so that overlapping checks overlap)."""

    def __init__(self, pause_s: float = 0.0) -> None:
        self.pause_s = pause_s
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.verified = 0

    def hash(self, password: str) -> str:
        return FAST_HASHER.hash(password)

    def verify(self, hash: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.pause_s)  # in the hashing thread, as argon2 would take it
            return FAST_HASHER.verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1

    def check_needs_rehash(self, hash: str) -> bool:
        return FAST_HASHER.check_needs_rehash(hash)


@dataclass(frozen=True)
class Tls:
    """A throwaway CA and a certificate it signed for localhost, 127.0.0.1 and ::1."""

    ca_file: str
    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """For https servers on loopback (webhook receivers, a push service) in tests."""
    directory: Path = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxima test CA")])
    ca = _certificate(ca_name, ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = _certificate(name, ca_name, key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Tls(str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem"))


def console_app(
    directory: Directory,
    lifecycle: Lifecycle,
    clock: FakeUtcClock,
    settings: NotifierSettings | None = None,
    **extra: Any,
) -> web.Application:
    """The console's app over the test's Redis, directory, lifecycle and clock."""
    return Console(
        redis=lifecycle.redis,
        prefix=lifecycle.prefix,
        directory=directory,
        lifecycle=lifecycle,
        settings=settings or NotifierSettings(),
        metrics=Metrics(),
        clock=clock,
        **extra,
    ).app()


def make_alert(**overrides: Any) -> Alert:
    return Alert.model_validate(alert_dict(**overrides))


@pytest.fixture
def clock() -> FakeUtcClock:
    return FakeUtcClock()


@pytest.fixture
def services(namespace: str) -> ServiceSettings:
    return ServiceSettings(namespace=namespace)


@pytest.fixture
async def redis(services: ServiceSettings) -> AsyncIterator[aioredis.Redis]:
    async with redis_dropped_after(services, decode_responses=True) as client:
        yield client


@pytest.fixture
def directory(redis: aioredis.Redis, services: ServiceSettings, clock: FakeUtcClock) -> Directory:
    return Directory(redis, services.redis_prefix, hasher=FAST_HASHER, clock=clock)


@pytest.fixture
def lifecycle(
    redis: aioredis.Redis, services: ServiceSettings, directory: Directory, clock: FakeUtcClock
) -> Lifecycle:
    return Lifecycle(redis, services.redis_prefix, directory, clock=clock)


@pytest.fixture
def store() -> str:
    return f"store-{uuid.uuid4().hex[:6]}"


BOOKINGS_SECRET = "whsec_" + base64.b64encode(b"proxima-console-bookings-secret!").decode()


@dataclass(frozen=True)
class BookingsApiServer:
    """A real bookings API (``stream.bookings_api``) on a free port, over the test's Redis
    namespace: the console books through it as it does in production."""

    url: str
    bookings: Bookings  # what was stored, read back from Redis

    async def enroll(self, customer_id: str) -> None:
        await Registry(self.bookings.r, self.bookings.p).enroll(
            make_customer(customer_id=customer_id), []
        )


@pytest.fixture
async def bookings_api(
    redis: aioredis.Redis, services: ServiceSettings
) -> AsyncIterator[BookingsApiServer]:
    api = BookingsApi(
        redis, services.redis_prefix, BookingsApiSettings(secret=BOOKINGS_SECRET, port=0)
    )
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield BookingsApiServer(f"http://127.0.0.1:{port}", Bookings(redis, services.redis_prefix))
    finally:
        await runner.cleanup()
