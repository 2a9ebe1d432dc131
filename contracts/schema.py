"""JSON Schema export of the wire models (``proxima contracts schema``)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from contracts.models import (
    Alert,
    AlertAck,
    AlertView,
    AlertWithdrawn,
    ConsentRecord,
    DlqRecord,
    Event,
    GatewayStatus,
)
from contracts.trace import AdvRecord, AppRecord, TraceHeader, TruthRecord

MODELS: dict[str, type[BaseModel]] = {
    "event": Event,
    "alert": Alert,
    "alert_view": AlertView,
    "alert_withdrawn": AlertWithdrawn,
    "ack": AlertAck,
    "gateway_status": GatewayStatus,
    "dlq": DlqRecord,
    "consent": ConsentRecord,
    "trace_header": TraceHeader,
    "trace_adv": AdvRecord,
    "trace_app": AppRecord,
    "trace_truth": TruthRecord,
}


def schemas() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$id"] = f"https://proxima.dev/schemas/{name}.v1.json"
        out[name] = schema
    # The batch is a list of events, 1..MAX_BATCH_EVENTS long.
    from contracts.models import MAX_BATCH_EVENTS

    out["event_batch"] = {
        "$id": "https://proxima.dev/schemas/event_batch.v1.json",
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH_EVENTS,
        "items": {"$ref": "event.v1.json"},
    }
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
