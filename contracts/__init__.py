"""Proxima's wire contracts: pydantic v2 models, topic names and schema versions.

This package imports nothing else of ours; every other package imports it.
"""

from contracts.models import (
    AckStatus,
    Alert,
    AlertAck,
    AlertKind,
    AlertView,
    AlertWithdrawn,
    DlqRecord,
    Event,
    EventKind,
    GatewayState,
    GatewayStatus,
    Priority,
    Subject,
    SubjectType,
    parse_alert,
    parse_batch,
)

__all__ = [
    "AckStatus",
    "Alert",
    "AlertAck",
    "AlertKind",
    "AlertView",
    "AlertWithdrawn",
    "DlqRecord",
    "Event",
    "EventKind",
    "GatewayState",
    "GatewayStatus",
    "Priority",
    "Subject",
    "SubjectType",
    "parse_alert",
    "parse_batch",
]
