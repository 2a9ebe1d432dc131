"""`proxima contracts schema` writes one JSON Schema per wire model."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.schema import write_schemas


def test_schemas_are_written_and_forbid_unknown_fields(tmp_path: Path) -> None:
    paths = {p.name for p in write_schemas(tmp_path)}
    assert {
        "event.schema.json",
        "alert.schema.json",
        "ack.schema.json",
        "event_batch.schema.json",
    } <= paths
    event = json.loads((tmp_path / "event.schema.json").read_text())
    assert event["additionalProperties"] is False
    assert "schema" in event["properties"]  # the alias, as on the wire
    kinds = event["$defs"]["EventKind"]["enum"]
    assert "zone_enter" in kinds
    assert "teleport" not in kinds
    batch = json.loads((tmp_path / "event_batch.schema.json").read_text())
    assert batch["minItems"] == 1
