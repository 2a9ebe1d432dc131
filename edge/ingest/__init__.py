"""App-event ingest: the customer's app reports to the gateway over HTTPS on the store network.

Three endpoints, all ``POST`` with a JSON body, for this gateway's store only:

- ``/v1/stores/{store}/geofence-transitions``: OS geofence transitions
  ``{"transitions": [{"geofence_id", "transition": "enter"|"exit", "at"}]}``;
- ``/v1/stores/{store}/beacon-regions``: store-beacon region enter/exit
  ``{"events": [{"region": {"type", "id"}, "transition", "at", "rssi"?}]}``;
- ``/v1/stores/{store}/locations``: location fixes
  ``{"fixes": [{"lat", "lon", "accuracy_m", "at"}]}``, evaluated against the store's
  geofences (:mod:`edge.geofence`); only the resulting ``geofence_*`` events leave the
  gateway, never the fixes themselves (no location trails, DESIGN.md "Minimisation").

One concept per module: :mod:`.settings` (and the TLS rule), :mod:`.store` (geofences and
beacon regions), :mod:`.bodies` (request bodies), :mod:`.signing` (the signature scheme),
:mod:`.auth` (who sent a request), :mod:`.nonces` (replay protection), :mod:`.ratelimit`,
:mod:`.events` (what a report becomes in the outbox), :mod:`.metrics`, :mod:`.quarantine`,
:mod:`.admin` (operators' endpoints) and :mod:`.server` (routes and the checks in order).
"""

from __future__ import annotations

from edge.ingest.bodies import (
    BeaconRegionIn,
    BeaconReport,
    FixIn,
    GeofenceReport,
    GeofenceTransitionIn,
    LocationReport,
    RegionRef,
    Report,
)
from edge.ingest.events import EventSink
from edge.ingest.exceptions import IngestConfigError, Rejection
from edge.ingest.metrics import IngestMetrics
from edge.ingest.nonces import NonceCache
from edge.ingest.quarantine import QUARANTINE_BODY_MAX, Quarantine
from edge.ingest.ratelimit import RateLimiter
from edge.ingest.server import ENDPOINTS, IngestServer
from edge.ingest.settings import IngestSettings
from edge.ingest.signing import (
    H_DEVICE,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    SIG_VERSION,
    canonical_string,
    sign_request,
    verify_signature,
)
from edge.ingest.store import (
    BeaconRegionSpec,
    CircleSpec,
    PolygonSpec,
    StoreIngestConfig,
    load_store_config,
)

__all__ = [
    "ENDPOINTS",
    "H_DEVICE",
    "H_NONCE",
    "H_SIGNATURE",
    "H_TIMESTAMP",
    "QUARANTINE_BODY_MAX",
    "SIG_VERSION",
    "BeaconRegionIn",
    "BeaconRegionSpec",
    "BeaconReport",
    "CircleSpec",
    "EventSink",
    "FixIn",
    "GeofenceReport",
    "GeofenceTransitionIn",
    "IngestConfigError",
    "IngestMetrics",
    "IngestServer",
    "IngestSettings",
    "LocationReport",
    "NonceCache",
    "PolygonSpec",
    "Quarantine",
    "RateLimiter",
    "RegionRef",
    "Rejection",
    "Report",
    "StoreIngestConfig",
    "canonical_string",
    "load_store_config",
    "sign_request",
    "verify_signature",
]
