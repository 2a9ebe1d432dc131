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


def test_approach_is_a_compatible_revision_of_the_alert_and_visit_schemas(tmp_path: Path) -> None:
    from contracts.models import Alert, VisitUpdate

    write_schemas(tmp_path)
    alert = json.loads((tmp_path / "alert.schema.json").read_text())
    visit = json.loads((tmp_path / "visit.schema.json").read_text())
    assert "approach" in alert["$defs"]["AlertKind"]["enum"]
    assert "approach" in visit["$defs"]["VisitChange"]["enum"]
    # The name stays v1 (every earlier record is still valid); the revision tells them apart.
    assert (alert["$id"], alert["x-proxima-revision"]) == (
        "https://proxima.dev/schemas/alert.v1.json",
        2,
    )
    assert visit["x-proxima-revision"] == 2
    assert json.loads((tmp_path / "event.schema.json").read_text())["x-proxima-revision"] == 1
    earlier = {
        "schema": "proxima.alert.v1",
        "alert_id": "00000000-0000-0000-0000-000000000001",
        "store_id": "store-1",
        "customer_id": "ana",
        "kind": "arrival",
        "title": "Ana is at the entrance",
        "caused_by": ["00000000-0000-0000-0000-000000000002"],
        "created_at": "2026-03-14T10:00:00.000Z",
    }
    assert Alert.model_validate(earlier).kind == "arrival"
    assert Alert.model_validate({**earlier, "kind": "approach"}).kind == "approach"
    assert (
        VisitUpdate.model_validate(
            {
                "visit_id": "v",
                "customer_id": "ana",
                "store_id": "store-1",
                "change": "approach",
                "at": "2026-03-14T10:00:00.000Z",
                "started_at": "2026-03-14T10:00:00.000Z",
                "source": "geofence",
            }
        ).change
        == "approach"
    )
