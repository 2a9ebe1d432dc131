"""What the console's API reads and writes: request bodies and response bodies (pydantic).

Responses are produced through these models, and the OpenAPI description is generated
from them, so what is documented is what is sent. The views (``AlertView``,
``AssociateView``, ...) check the dicts of ``view()``/``public()``/``as_dict()``; they
forbid unknown keys, so a field added there without being declared here fails the API
tests instead of going out undocumented.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, StrictBool

from contracts.models import AlertKind, Priority, WithdrawReason
from notifier.directory import Role
from notifier.lifecycle import AlertState
from notifier.rooms import RoomState
from notifier.store_routing import TIER_NAMES

_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# --- request bodies ----------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginBody(_Body):
    store: Annotated[str, Field(pattern=_IDENT)]
    associate: Annotated[str, Field(pattern=_IDENT)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class ShiftBody(_Body):
    on_shift: StrictBool


class WebhookBody(_Body):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Annotated[str, Field(min_length=16, max_length=256)] | None = None
    key_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    scope: Literal["me", "store"] = "me"


class MessagingBody(_Body):
    """The store's messaging webhook: where "your room is ready" goes (managers)."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Annotated[str, Field(min_length=16, max_length=256)] | None = None
    key_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    message: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=320,
                description="the text, with {room} and {associate}; default: 'Your fitting room "
                "({room}) is ready. {associate} will meet you.'",
            ),
        ]
        | None
    ) = None


class RoutingBody(_Body):
    escalate_after_s: float | None = None
    manager_after_s: float | None = None
    expire_after_s: float | None = None
    tiers: Annotated[list[str], Field(min_length=1, max_length=4)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None


class RoomBody(_Body):
    room_id: Annotated[str, Field(pattern=_IDENT)]
    name: Annotated[str, Field(min_length=1, max_length=60)]


class RoomsBody(_Body):
    """The store's whole layout: it replaces the rooms there were."""

    rooms: Annotated[list[RoomBody], Field(min_length=1, max_length=200)]


class HoldBody(_Body):
    """Whom a room is held for: an open alert's customer, or (managers) a customer id."""

    alert_id: UUID | None = None
    customer_id: Annotated[str, Field(pattern=_IDENT)] | None = Field(
        default=None, description="managers only, e.g. for a booking before she arrives"
    )
    booking_id: Annotated[str, Field(pattern=_IDENT)] | None = Field(
        default=None, description="the reservation or appointment the room is for"
    )


class PushKeys(_Body):
    p256dh: Annotated[str, Field(min_length=1, max_length=200)]
    auth: Annotated[str, Field(min_length=1, max_length=100)]


class PushSubscriptionBody(BaseModel):
    # The browser's PushSubscription.toJSON(); it may grow fields, so extras are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint: Annotated[str, Field(min_length=1, max_length=2048)]
    keys: PushKeys
    expirationTime: int | None = None


class ItemBody(_Body):
    """A reserved item: SKU, name, size, colour."""

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    size: Annotated[str, Field(max_length=16)] | None = None
    colour: Annotated[str, Field(max_length=40)] | None = None


class ReservationBody(_Body):
    """Items held for a customer to try or collect in a window, at the manager's store (a
    ``booking_id`` given replaces that booking: a change)."""

    type: Literal["reservation"]
    booking_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    customer_id: Annotated[str, Field(pattern=_IDENT)]
    items: Annotated[list[ItemBody], Field(min_length=1, max_length=50)]
    start: AwareDatetime
    end: AwareDatetime
    associate_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    note: Annotated[str, Field(max_length=500)] | None = None


class AppointmentBody(_Body):
    """A time with a purpose, an associate and maybe a room, at the manager's store (a
    ``booking_id`` given replaces that booking: a change)."""

    type: Literal["appointment"]
    booking_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    customer_id: Annotated[str, Field(pattern=_IDENT)]
    at: AwareDatetime
    duration_min: Annotated[int, Field(gt=0, le=24 * 60)] = 60
    purpose: Annotated[str, Field(min_length=1, max_length=200)]
    associate_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    room: Annotated[str, Field(max_length=64)] | None = None


class BookingBody(
    RootModel[Annotated[ReservationBody | AppointmentBody, Field(discriminator="type")]]
):
    """A reservation or an appointment (``type`` says which)."""


class CancelBookingBody(_Body):
    customer_id: Annotated[str, Field(pattern=_IDENT)]
    booking_id: Annotated[str, Field(pattern=_IDENT)]


# --- views: the objects responses are made of ------------------------------------------
# Times and ids stay the strings view() made (isoformat, "+00:00"): parsing them into
# datetime would send them back as "Z" times, a change for every client.
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoomMarkView(_View):
    """The fitting room held for an alert's customer, as the alert shows it."""

    room_id: str
    name: str
    state: RoomState
    ready: bool
    label: str = Field(description="'Room 2 ready', 'Room 2 not ready yet' or 'Room 2 in use'")


class AlertView(_View):
    """An alert as a console sees it: never the customer id."""

    alert_id: Uuid
    store_id: str
    kind: AlertKind
    title: str
    body: str
    fields: dict[str, Any] = Field(description="only the fields the customer made visible")
    zone_id: str | None
    priority: Priority
    created_at: Time
    delivered_at: Time
    state: AlertState
    tier: str | None = Field(description="the tier last told (primary, zone, ...)")
    level: int
    notified: list[str]
    declined: list[str]
    claimed_by: str | None
    claimed_by_name: str | None
    claimed_at: Time | None
    done_at: Time | None
    expired_at: Time | None
    withdrawn_at: Time | None = None
    withdrawn_reason: WithdrawReason | None = Field(
        default=None, description="why a withdrawn alert was withdrawn (its fields are gone)"
    )
    rev: int = Field(description="grows with every change: a console keeps the highest")
    room: RoomMarkView | None = Field(
        default=None, description="the fitting room held for this alert's customer, if any"
    )


class RoomView(_View):
    """A fitting room as a console sees it: never the customer it is held for."""

    room_id: str
    name: str
    state: RoomState
    held_by: str | None
    held_by_name: str | None
    held_at: Time | None
    alert_id: Uuid | None = Field(description="the alert it was held for")
    booking_id: str | None
    changed_at: Time | None
    rev: int = Field(description="grows with every change: a console keeps the highest")


class RoomCountsView(_View):
    """Operational counts of the store's day (its time zone): changes into each state."""

    day: str
    timezone: str
    held: int
    ready: int
    used: int


class AssociateView(_View):
    """An associate as the console shows them: never the password hash."""

    store_id: str
    associate_id: str
    name: str
    role: Role
    zones: list[str]
    on_shift: bool
    shift_started_at: Time | None


class ReceiptView(BaseModel):
    """What one channel reported for one send."""

    # Read back from Redis, where an instance of a newer version may have written a field
    # this one does not know (a rolling deploy): left out of the reply, not an error.
    model_config = ConfigDict(extra="ignore", frozen=True)

    channel: str = Field(description="mqtt, sse, webhook, webpush or unknown")
    destination: str = Field(description="the host only")
    associate_id: str | None
    ok: bool
    attempts: int
    at: Time
    status: int | None
    detail: str


class RoutingView(_View):
    escalate_after_s: float
    manager_after_s: float
    expire_after_s: float
    tiers: list[Annotated[str, Field(json_schema_extra={"enum": sorted(TIER_NAMES)})]]
    timezone: str = Field(description="IANA time zone: where the store's day begins")


class DestinationView(_View):
    id: str
    channel: str = Field(description="webhook or webpush")
    url: str = Field(description="scheme, host and path only")
    key_id: str | None


class MessagingView(_View):
    url: str = Field(description="scheme, host and path only")
    key_id: str
    message: str = Field(description="the template: {room} and {associate} are filled in")
    set_at: str | None


class MessageReceiptView(_View):
    """One result of telling a customer her room is ready (no customer in it)."""

    at: str
    room: str
    result: Literal["queued", "sent", "failed", "skipped_no_consent"]
    status: int | None = Field(description="the messaging system's HTTP status")
    attempts: int
    detail: str
    delivery_id: str = Field(description="X-Proxima-Delivery of the request ('' if none)")


class ReservedItemView(_View):
    sku: str
    name: str
    size: str | None
    colour: str | None


class ReservationView(_View):
    """A reservation as the bookings API keeps it."""

    type: Literal["reservation"]
    booking_id: str
    customer_id: str
    store_id: str
    items: list[ReservedItemView]
    start: Time
    end: Time
    associate_id: str | None
    note: str | None


class AppointmentView(_View):
    """An appointment as the bookings API keeps it."""

    type: Literal["appointment"]
    booking_id: str
    customer_id: str
    store_id: str
    at: Time
    duration_min: int
    purpose: str
    associate_id: str | None
    room: str | None


BookingView = Annotated[ReservationView | AppointmentView, Field(discriminator="type")]


class SummaryView(_View):
    """Today in one store, from midnight in its time zone."""

    arrivals_today: int
    alerts_today: int
    unclaimed: int
    claimed_today: int
    median_time_to_claim_s: float | None
    timezone: str = Field(description="the store's IANA time zone (its routing)")
    since: str | None = Field(description="the store's midnight, ISO 8601 with its offset")


class OutcomeTotalsView(_View):
    """A store's counts over the period (operational: no consent needed, nobody named)."""

    approaches: int = Field(description="'on her way' alerts")
    arrivals: int = Field(description="arrival alerts")
    claimed: int = Field(description="arrivals greeted: claimed by an associate")
    done: int = Field(description="arrivals closed")
    unserved: int = Field(description="arrivals that expired with nobody claiming them")
    room_ready: int = Field(description="arrivals whose held room was ready (or in use)")
    room_not_ready: int = Field(description="arrivals whose held room was not ready yet")
    served_share: float | None = Field(description="claimed / arrivals")
    median_time_to_claim_s: float | None
    median_room_ready_before_arrival_s: float | None = Field(
        description="how long a ready room waited for its customer (median)"
    )


class OutcomeDayView(_View):
    day: str = Field(description="a store-local date")
    approaches: int
    arrivals: int
    claimed: int
    done: int
    unserved: int
    room_ready: int
    room_not_ready: int
    median_time_to_claim_s: float | None


class OutcomeAssociateView(_View):
    associate: str
    name: str
    claimed: int
    done: int
    median_time_to_claim_s: float | None


class OutcomeVisitView(_View):
    """One visit, kept only for a customer who granted analytics for the store."""

    visit: str = Field(description="the stream's visit id (does not name the customer)")
    day: str | None
    approached_at: str | None
    arrived_at: str | None
    zone: str | None
    claimed_at: str | None
    claimed_by: str | None
    time_to_claim_s: float | None
    room: str | None
    room_ready_at: str | None
    room_ready_before_arrival_s: float | None = Field(
        description="positive: the room was ready that long before she arrived"
    )
    room_in_use_at: str | None
    done_at: str | None


class OutcomesView(_View):
    """A store's outcomes over ``days`` store-local days ending today."""

    store_id: str
    days: int
    timezone: str
    since: str = Field(description="the first day's midnight in the store's zone, ISO 8601")
    totals: OutcomeTotalsView
    by_day: list[OutcomeDayView]
    associates: list[OutcomeAssociateView]
    visits: list[OutcomeVisitView]


# --- responses -----------------------------------------------------------------------
class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorReply(_Reply):
    """Every error: a message in words, and where the input was wrong when it was."""

    error: str
    field: str | None = None
    retry_after_s: int | None = None
    state: str | None = None
    claimed_by: str | None = None
    held_by: str | None = None


class HealthReply(_Reply):
    status: Literal["ok", "unavailable"]
    redis: bool
    mqtt: bool


class MeReply(_Reply):
    associate: AssociateView
    csrf: str = Field(description="echo it in X-CSRF-Token on every change")


class SignedOutReply(_Reply):
    signed_out: bool


class AlertReply(_Reply):
    alert: AlertView


class AlertsReply(_Reply):
    alerts: list[AlertView]


class ReceiptsReply(_Reply):
    receipts: list[ReceiptView]


class StaffReply(_Reply):
    associates: list[AssociateView]


class AssociateReply(_Reply):
    associate: AssociateView


class SummaryReply(_Reply):
    summary: SummaryView


class OutcomesReply(_Reply):
    outcomes: OutcomesView


class ChannelsReply(_Reply):
    always: list[str]
    mine: list[DestinationView]
    store: list[DestinationView] | None = Field(
        default=None, description="the store's webhooks: managers only"
    )


class DestinationReply(_Reply):
    destination: DestinationView


class WebhookReply(_Reply):
    destination: DestinationView
    secret: str = Field(description="shown here once; listings never show it")


class MessagingReply(_Reply):
    messaging: MessagingView | None = Field(description="null: the store sets none")
    receipts: list[MessageReceiptView] = Field(description="the latest results, newest first")


class MessagingSetReply(_Reply):
    messaging: MessagingView
    secret: str = Field(description="shown here once; GET /api/messaging never shows it")


class RemovedReply(_Reply):
    removed: str


class PushKeyReply(_Reply):
    public_key: str


class RoutingReply(_Reply):
    routing: RoutingView


class BeaconRow(_View):
    """A store beacon as its gateway last heard its Eddystone-TLM."""

    address: str
    beacon_id: str | None
    battery_mv: int | None
    temperature_c: float | None
    last_seen: str
    low_battery: bool


class GatewayRow(_View):
    """One gateway of the store as the bridge last recorded it (transport.fleet)."""

    store_id: str
    gateway_id: str
    state: str
    since: str
    version: str | None
    config_version: str | None
    last_batch: str | None
    outbox_depth: int | None
    outbox_oldest_s: float | None
    beacons: list[BeaconRow]
    flags: list[str] = Field(
        description="what needs a person: offline, silent, backlog, low battery"
    )


class GatewaysReply(_Reply):
    gateways: list[GatewayRow]


class RoomsReply(_Reply):
    rooms: list[RoomView]
    today: RoomCountsView


class RoomReply(_Reply):
    room: RoomView


class BookingsReply(_Reply):
    connected: bool = Field(
        description="false: PROXIMA_NOTIFIER_BOOKINGS_API_URL is not set (no bookings listed)"
    )
    reason: str | None = Field(default=None, description="why not connected, in words")
    day: str = Field(description="the store-local date listed, YYYY-MM-DD")
    timezone: str = Field(description="the store's IANA time zone (its routing)")
    bookings: list[BookingView] = Field(description="the bookings starting that day, by start")


class BookingReply(_Reply):
    booking: BookingView


class CancelledReply(_Reply):
    cancelled: str = Field(description="the booking id")
