"""Topic names (DESIGN.md, Contract: MQTT topics v1 and Kafka topics v1; the batch
topic ``proxima.events.v2``: docs/developers/events-v2.md).

``namespace`` (``PROXIMA_NAMESPACE``, empty by default) prefixes every name so that
tests and several demo systems can share one broker without seeing each other's
traffic; with an empty namespace the names are exactly the contract's.
``alerts_namespace`` (``PROXIMA_ALERTS_NAMESPACE``), when set, replaces it for the topics
people's devices use (alerts, acks, shifts): ``proxima up``'s demo keeps its data in a
namespace of its own and still delivers on the contract's alert topics.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = "proxima.events.v1"
EVENTS_V2 = "proxima.events.v2"
"""One record per signed gateway batch (docs/developers/events-v2.md)."""
EVENTS_DLQ = "proxima.events.dlq.v1"
VISITS = "proxima.visits.v1"
ALERTS = "proxima.alerts.v1"
ACKS = "proxima.acks.v1"
CONSENT = "proxima.consent.v1"
KAFKA_TOPICS = (EVENTS, EVENTS_V2, EVENTS_DLQ, VISITS, ALERTS, ACKS, CONSENT)

MQTT_ROOT = "proxima/v1"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name for one namespace."""

    namespace: str = ""
    alerts_namespace: str | None = None  # None: the namespace's; "": the contract's names

    def __post_init__(self) -> None:
        for ns in (self.namespace, self.alerts_namespace or ""):
            if any(c in ns for c in "/+#. \t"):
                raise ValueError(f"namespace {ns!r} may not contain '/', '+', '#', '.' or spaces")

    # Kafka
    def kafka(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def events(self) -> str:
        return self.kafka(EVENTS)

    @property
    def events_v2(self) -> str:
        return self.kafka(EVENTS_V2)

    @property
    def events_dlq(self) -> str:
        return self.kafka(EVENTS_DLQ)

    @property
    def alerts(self) -> str:
        return self.kafka(ALERTS)

    @property
    def acks(self) -> str:
        return self.kafka(ACKS)

    @property
    def all_kafka(self) -> tuple[str, ...]:
        return tuple(self.kafka(t) for t in KAFKA_TOPICS)

    # MQTT
    @property
    def mqtt_root(self) -> str:
        return f"{self.namespace}/{MQTT_ROOT}" if self.namespace else MQTT_ROOT

    def gateway_events(self, store: str, gateway: str) -> str:
        return f"{self.mqtt_root}/stores/{store}/gateways/{gateway}/events"

    def gateway_evidence(self, store: str, gateway: str) -> str:
        """A fused store's gateway → its coordinator (store-local, never bridged to Kafka)."""
        return f"{self.mqtt_root}/stores/{store}/gateways/{gateway}/evidence"

    def store_evidence(self, store: str) -> str:
        """Subscription filter for every gateway's evidence in one store (the coordinator's)."""
        return f"{self.mqtt_root}/stores/{store}/gateways/+/evidence"

    def gateway_status(self, store: str, gateway: str) -> str:
        return f"{self.mqtt_root}/stores/{store}/gateways/{gateway}/status"

    def gateway_config(self, store: str, gateway: str) -> str:
        return f"{self.mqtt_root}/stores/{store}/gateways/{gateway}/config"

    @property
    def alerts_root(self) -> str:
        """Root of the topics handhelds and store screens use (alerts, acks, shifts)."""
        ns = self.namespace if self.alerts_namespace is None else self.alerts_namespace
        return f"{ns}/{MQTT_ROOT}" if ns else MQTT_ROOT

    def associate_alerts(self, store: str, associate: str) -> str:
        return f"{self.alerts_root}/stores/{store}/associates/{associate}/alerts"

    def store_alerts(self, store: str) -> str:
        return f"{self.alerts_root}/stores/{store}/alerts"

    def associate_ack(self, store: str, associate: str, alert_id: str) -> str:
        """Where an associate's handheld acks an alert: under the associate's own topics,
        so the broker's ACL can hold each handheld to its own acks."""
        return f"{self.alerts_root}/stores/{store}/associates/{associate}/acks/{alert_id}"

    def alert_ack(self, store: str, alert_id: str) -> str:
        """The store-wide ack topic of 0.1 (deprecated): it cannot say who sent an ack, so
        the notifier takes it only with ``PROXIMA_NOTIFIER_LEGACY_ACK_TOPIC``."""
        return f"{self.alerts_root}/stores/{store}/alerts/{alert_id}/ack"

    def all_associate_acks(self, share_group: str | None = None) -> str:
        flt = f"{self.alerts_root}/stores/+/associates/+/acks/+"
        return f"$share/{share_group}/{flt}" if share_group else flt

    def all_legacy_acks(self, share_group: str | None = None) -> str:
        flt = f"{self.alerts_root}/stores/+/alerts/+/ack"
        return f"$share/{share_group}/{flt}" if share_group else flt

    def all_gateway_events(self, share_group: str | None = None) -> str:
        """Subscription filter for every gateway's events, shared when a group is given."""
        flt = f"{self.mqtt_root}/stores/+/gateways/+/events"
        return f"$share/{share_group}/{flt}" if share_group else flt

    def all_store_alerts(self) -> str:
        return f"{self.alerts_root}/stores/+/alerts"

    def parse_ack_topic(self, topic: str) -> tuple[str, str | None, str]:
        """(store, associate, alert id) of an ack topic; the associate is None on the
        legacy store-wide topic. Raises ValueError for any other topic."""
        prefix = f"{self.alerts_root}/stores/"
        parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
        if len(parts) == 5 and parts[1] == "associates" and parts[3] == "acks":
            return parts[0], parts[2], parts[4]
        if len(parts) == 4 and parts[1] == "alerts" and parts[3] == "ack":
            return parts[0], None, parts[2]
        raise ValueError(f"topic {topic!r} is not an ack topic")

    def parse_gateway_topic(self, topic: str) -> tuple[str, str, str]:
        """Split a gateway topic into (store, gateway, leaf) or raise ValueError."""
        prefix = f"{self.mqtt_root}/stores/"
        if not topic.startswith(prefix):
            raise ValueError(f"topic {topic!r} is not under {prefix!r}")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 4 or parts[1] != "gateways":
            raise ValueError(f"topic {topic!r} is not a gateway topic")
        return parts[0], parts[2], parts[3]
