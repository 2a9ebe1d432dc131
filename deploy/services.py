"""Are the services there? Clear answers naming what to install or set."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from redis.exceptions import RedisClusterException, RedisError

from contracts.services import redact_url
from transport.mqtt import MqttClient, MqttError
from transport.redis import connect_redis, is_cluster_url


class ServiceUnavailable(RuntimeError):
    """A required service does not answer; the message says how to fix it."""


async def check_mqtt(url: str, timeout: float = 5.0) -> None:
    try:
        client = MqttClient(url)
        await client.connect(timeout=timeout)
        await client.disconnect()
    except (MqttError, ValueError) as exc:
        raise ServiceUnavailable(
            f"MQTT broker at {redact_url(url)} does not answer ({exc}). Start Mosquitto "
            "(Debian/Ubuntu: sudo apt-get install mosquitto && sudo systemctl start mosquitto) "
            "or set PROXIMA_MQTT=mqtt://host:port."
        ) from exc


async def check_redis(url: str, timeout: float = 5.0) -> None:
    """Redis answers at ``url``; a cluster node behind a single-server URL is refused."""
    host = urlsplit(url).netloc.rpartition("@")[2]  # never print the password
    try:
        client = connect_redis(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        raise ServiceUnavailable(f"PROXIMA_REDIS: {exc}") from exc
    try:
        await client.ping()
        if not is_cluster_url(url):
            info = await client.info("cluster")
            if str(info.get("cluster_enabled", 0)) == "1":
                raise ServiceUnavailable(
                    f"Redis at {host} is a Redis Cluster node: a single-server client would "
                    f"be refused (MOVED) for most keys. Set "
                    f"PROXIMA_REDIS=redis+cluster://{host}[,host:port...]."
                )
    except (RedisError, RedisClusterException, OSError, ValueError) as exc:
        raise ServiceUnavailable(
            f"Redis at {host} does not answer ({exc}). Start Redis "
            "(Debian/Ubuntu: sudo apt-get install redis-server && sudo systemctl start redis-server) "
            "or set PROXIMA_REDIS=redis://host:port/db (redis+cluster://host:port,... for a "
            "Redis Cluster)."
        ) from exc
    finally:
        await client.aclose()


async def check_all(mqtt: str, redis: str) -> None:
    await asyncio.gather(check_mqtt(mqtt), check_redis(redis))
