"""``proxima associates add|list|remove``: the directory from the command line.

``deploy/cli.py`` mounts :data:`associates_app`; the async functions below are what the
commands run, so other tools (and tests) can call them directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer

from contracts.services import ServiceSettings
from notifier.channels import Destination
from notifier.destinations import Destinations
from notifier.directory import Associate, Directory, utc_now
from notifier.exceptions import InvalidInput, NotifierError
from notifier.messaging import Messaging, MessagingHook
from notifier.outcomes import PERIODS, OutcomeReport, Outcomes
from notifier.purposes import Purposes
from notifier.rooms import Room, Rooms
from notifier.routing import Ladder
from notifier.store_routing import RoutingConfigs, StoreRouting
from transport.cli import fail, out, run_forever, verbose_logging
from transport.redis import connect_redis

T = TypeVar("T")

associates_app = typer.Typer(
    help="Store associates: accounts, roles and zones for routing and the console.",
    no_args_is_help=True,
)


routing_app = typer.Typer(
    help="Per-store routing: escalation times, expiry and the tiers in use.",
    no_args_is_help=True,
)
channels_app = typer.Typer(
    help="Extra delivery channels: signed webhooks per store or per associate.",
    no_args_is_help=True,
)
rooms_app = typer.Typer(
    help="Per-store fitting rooms: the layout associates hold, prepare and free rooms in.",
    no_args_is_help=True,
)
messaging_app = typer.Typer(
    help="Per-store customer messages: 'your room is ready', through the retailer's messaging"
    " system (a signed webhook), to customers who granted room_messages.",
    no_args_is_help=True,
)
notifier_app = typer.Typer(help="The associate notifier.", no_args_is_help=True)
notifier_app.add_typer(routing_app, name="routing")
notifier_app.add_typer(rooms_app, name="rooms")
notifier_app.add_typer(messaging_app, name="messaging")


async def _with_directory(services: ServiceSettings, fn: Callable[[Directory], Awaitable[T]]) -> T:
    redis = connect_redis(services.redis, decode_responses=True)
    try:
        return await fn(Directory(redis, services.redis_prefix))
    finally:
        await redis.aclose()


async def add_associate(
    services: ServiceSettings,
    store: str,
    name: str,
    password: str,
    *,
    role: str = "associate",
    zones: list[str] | None = None,
    associate_id: str | None = None,
) -> Associate:
    return await _with_directory(
        services,
        lambda d: d.add(
            store, name, password, role=role, zones=zones or [], associate_id=associate_id
        ),
    )


async def list_associates(services: ServiceSettings, store: str | None = None) -> list[Associate]:
    async def run(d: Directory) -> list[Associate]:
        stores = [store] if store else await d.stores()
        return [a for s in stores for a in await d.staff(s)]

    return await _with_directory(services, run)


async def remove_associate(services: ServiceSettings, store: str, associate_id: str) -> None:
    await _with_directory(services, lambda d: d.remove(store, associate_id))


def _run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    try:
        return asyncio.run(main())
    except NotifierError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@associates_app.command("add")
def add_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    name: Annotated[str, typer.Option("--name", help="display name, e.g. 'Maria Silva'")],
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="console password (prompted when omitted; at least 8 characters)",
        ),
    ],
    role: Annotated[str, typer.Option("--role", help="associate or manager")] = "associate",
    zone: Annotated[
        list[str] | None, typer.Option("--zone", help="a zone this associate covers (repeat)")
    ] = None,
    associate_id: Annotated[
        str | None, typer.Option("--id", help="sign-in id; default: the name as a slug")
    ] = None,
) -> None:
    """Add an associate to a store; prints the sign-in id."""
    associate = _run(
        add_associate(
            ServiceSettings(),
            store,
            name,
            password,
            role=role,
            zones=zone or [],
            associate_id=associate_id,
        )
    )
    typer.echo(associate.associate_id)


@associates_app.command("list")
def list_command(
    store: Annotated[str | None, typer.Option("--store", help="only this store")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List associates (never their password hashes)."""
    for a in _run(list_associates(ServiceSettings(), store)):
        if as_json:
            typer.echo(json.dumps(a.public()))
        else:
            shift = "on shift" if a.on_shift else "off shift"
            zones = ",".join(a.zones) or "-"
            typer.echo(f"{a.store_id}\t{a.associate_id}\t{a.name}\t{a.role}\t{zones}\t{shift}")


@associates_app.command("remove")
def remove_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    associate_id: Annotated[str, typer.Argument(help="the associate's id")],
) -> None:
    """Remove an associate: their console sessions end, live feeds close, webhooks go."""
    _run(remove_associate(ServiceSettings(), store, associate_id))
    typer.echo(f"removed {associate_id} from {store}")


async def _with_destinations(
    services: ServiceSettings, fn: Callable[[Destinations], Awaitable[T]]
) -> T:
    return await _with_directory(
        services, lambda d: fn(Destinations(d.redis, services.redis_prefix, d))
    )


async def add_webhook(
    services: ServiceSettings,
    store: str,
    url: str,
    *,
    associate_id: str | None = None,
    secret: str | None = None,
    key_id: str | None = None,
) -> Destination:
    return await _with_destinations(
        services,
        lambda d: d.add_webhook(
            store, url, associate_id=associate_id, secret=secret, key_id=key_id
        ),
    )


@channels_app.command("add-webhook")
def add_webhook_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    url: Annotated[str, typer.Option("--url", help="https:// URL that receives signed POSTs")],
    associate: Annotated[
        str | None, typer.Option("--associate", help="only alerts routed to this associate")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="HMAC key (>= 16 characters); default: a random one"),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="names the key in X-Proxima-Key-Id")
    ] = None,
) -> None:
    """Add a webhook; prints its id and its secret (shown only now)."""
    dest = _run(
        add_webhook(
            ServiceSettings(), store, url, associate_id=associate, secret=secret, key_id=key_id
        )
    )
    typer.echo(json.dumps({**dest.public(), "secret": dest.secret}))


@channels_app.command("list")
def list_channels_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    associate: Annotated[
        str | None, typer.Option("--associate", help="this associate's (default: the store's)")
    ] = None,
) -> None:
    """List webhooks and push subscriptions, one JSON object per line (never secrets)."""
    services = ServiceSettings()
    for dest in _run(_with_destinations(services, lambda d: d.list(store, associate))):
        typer.echo(json.dumps(dest.public()))


@channels_app.command("remove")
def remove_channel_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    destination_id: Annotated[str, typer.Argument(help="the id shown by 'list'")],
    associate: Annotated[
        str | None, typer.Option("--associate", help="the associate it belongs to")
    ] = None,
) -> None:
    """Remove a webhook or push subscription."""
    services = ServiceSettings()
    _run(_with_destinations(services, lambda d: d.remove(store, destination_id, associate)))
    typer.echo(f"removed {destination_id}")


def _routing(services: ServiceSettings) -> Callable[[Directory], RoutingConfigs]:
    from notifier.settings import NotifierSettings

    settings = NotifierSettings()
    default = StoreRouting(
        Ladder(
            escalate_after=timedelta(seconds=settings.escalate_after_s),
            manager_after=timedelta(seconds=settings.manager_after_s),
            max_shift=timedelta(seconds=settings.max_shift_s),
        ),
        timedelta(seconds=settings.expire_after_s),
    )
    return lambda d: RoutingConfigs(d.redis, services.redis_prefix, default)


async def set_routing(
    services: ServiceSettings,
    store: str,
    *,
    escalate_after_s: float | None = None,
    manager_after_s: float | None = None,
    expire_after_s: float | None = None,
    tiers: list[str] | None = None,
    timezone: str | None = None,
) -> StoreRouting:
    make = _routing(services)
    return await _with_directory(
        services,
        lambda d: make(d).set(
            store,
            escalate_after_s=escalate_after_s,
            manager_after_s=manager_after_s,
            expire_after_s=expire_after_s,
            tiers=tiers,
            timezone=timezone,
        ),
    )


@routing_app.command("show")
def routing_show(store: Annotated[str, typer.Option("--store", help="store id")]) -> None:
    """Print the store's routing as JSON (the default when it has no override)."""
    services = ServiceSettings()
    make = _routing(services)
    routing = _run(_with_directory(services, lambda d: make(d).get(store)))
    typer.echo(json.dumps(routing.as_dict()))


@routing_app.command("set")
def routing_set(
    store: Annotated[str, typer.Option("--store", help="store id")],
    escalate_after: Annotated[
        float | None, typer.Option("--escalate-after", help="seconds unclaimed → next tier")
    ] = None,
    manager_after: Annotated[
        float | None, typer.Option("--manager-after", help="seconds unclaimed → the manager")
    ] = None,
    expire_after: Annotated[
        float | None, typer.Option("--expire-after", help="seconds unclaimed → expired")
    ] = None,
    tiers: Annotated[
        str | None,
        typer.Option("--tiers", help="comma-separated: primary,zone,on_shift,manager"),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="the store's IANA time zone, where its day begins (Europe/Lisbon)"),
    ] = None,
) -> None:
    """Override some of a store's routing; prints the result."""
    routing = _run(
        set_routing(
            ServiceSettings(),
            store,
            escalate_after_s=escalate_after,
            manager_after_s=manager_after,
            expire_after_s=expire_after,
            tiers=[t.strip() for t in tiers.split(",")] if tiers is not None else None,
            timezone=timezone,
        )
    )
    typer.echo(json.dumps(routing.as_dict()))


@routing_app.command("reset")
def routing_reset(store: Annotated[str, typer.Option("--store", help="store id")]) -> None:
    """Drop the store's override: it follows the notifier's settings again."""
    services = ServiceSettings()
    make = _routing(services)
    routing = _run(_with_directory(services, lambda d: make(d).reset(store)))
    typer.echo(json.dumps(routing.as_dict()))


def parse_rooms(pairs: list[str]) -> dict[str, str]:
    """``ID=NAME`` pairs as a layout; a pair without ``=`` or an id given twice is named."""
    rooms: dict[str, str] = {}
    for pair in pairs:
        room_id, eq, name = pair.partition("=")
        if not eq:
            raise InvalidInput("room", f"{pair!r} is not ID=NAME (e.g. 2='Room 2')")
        if room_id.strip() in rooms:
            raise InvalidInput("room", f"room {room_id.strip()!r} is given twice")
        rooms[room_id.strip()] = name
    return rooms


async def _staff_names(d: Directory, store: str) -> dict[str, str]:
    return {a.associate_id: a.name for a in await d.staff(store)}


async def set_rooms(services: ServiceSettings, store: str, rooms: dict[str, str]) -> list[Room]:
    """Replace the store's layout and tell its open consoles."""

    async def run(d: Directory) -> list[Room]:
        repo = Rooms(d.redis, services.redis_prefix)
        result = await repo.set_layout(store, rooms)
        await repo.publish_all(store, await _staff_names(d, store))
        return result

    return await _with_directory(services, run)


async def list_rooms(services: ServiceSettings, store: str) -> tuple[list[Room], dict[str, Any]]:
    """The store's rooms, and today's counts (from midnight in the store's time zone)."""
    make = _routing(services)

    async def run(d: Directory) -> tuple[list[Room], dict[str, Any]]:
        repo = Rooms(d.redis, services.redis_prefix)
        routing = await make(d).get(store)
        day = routing.midnight(utc_now()).date().isoformat()
        today = {"day": day, "timezone": routing.timezone, **await repo.counts(store, day)}
        return await repo.list_rooms(store), today

    return await _with_directory(services, run)


@rooms_app.command("set")
def rooms_set(
    store: Annotated[str, typer.Option("--store", help="store id")],
    room: Annotated[
        list[str],
        typer.Option("--room", help="ID=NAME, e.g. 2='Room 2' (repeat; replaces the layout)"),
    ],
) -> None:
    """Set the store's fitting rooms (all of them); a room held or in use cannot be left out."""
    try:
        layout = parse_rooms(room)
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for r in _run(set_rooms(ServiceSettings(), store, layout)):
        typer.echo(json.dumps(r.view()))


@rooms_app.command("list")
def rooms_list(
    store: Annotated[str, typer.Option("--store", help="store id")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per room")] = False,
) -> None:
    """The store's fitting rooms and their state, then today's counts (held, ready, used)."""
    rooms, today = _run(list_rooms(ServiceSettings(), store))
    for r in rooms:
        if as_json:
            typer.echo(json.dumps(r.view()))
        else:
            who = f"\t{r.held_by}" if r.held_by else ""
            typer.echo(f"{r.room_id}\t{r.name}\t{r.state.value}{who}")
    if not as_json:
        if not rooms:
            typer.echo(f"no fitting rooms in {store}: proxima notifier rooms set --store {store}")
        typer.echo(
            f"today ({today['day']}, {today['timezone']}): held {today['held']}, "
            f"ready {today['ready']}, used {today['used']}"
        )


@rooms_app.command("history")
def rooms_history(
    store: Annotated[str, typer.Option("--store", help="store id")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
) -> None:
    """The latest room changes, newest first, one JSON object per line (who, when)."""
    services = ServiceSettings()
    rows = _run(
        _with_directory(
            services, lambda d: Rooms(d.redis, services.redis_prefix).history(store, limit)
        )
    )
    for row in rows:
        typer.echo(json.dumps(row))


async def _with_messaging(services: ServiceSettings, fn: Callable[[Messaging], Awaitable[T]]) -> T:
    prefix = services.redis_prefix
    return await _with_directory(
        services, lambda d: fn(Messaging(d.redis, prefix, Purposes(d.redis, prefix)))
    )


async def set_messaging(
    services: ServiceSettings,
    store: str,
    url: str,
    *,
    secret: str | None = None,
    key_id: str | None = None,
    message: str | None = None,
) -> MessagingHook:
    return await _with_messaging(
        services, lambda m: m.set(store, url, secret=secret, key_id=key_id, message=message)
    )


async def show_messaging(
    services: ServiceSettings, store: str, limit: int = 20
) -> tuple[MessagingHook | None, list[dict[str, Any]]]:
    async def run(m: Messaging) -> tuple[MessagingHook | None, list[dict[str, Any]]]:
        return await m.get(store), await m.receipts(store, limit)

    return await _with_messaging(services, run)


@messaging_app.command("set")
def messaging_set(
    store: Annotated[str, typer.Option("--store", help="store id")],
    url: Annotated[
        str, typer.Option("--url", help="https:// URL of the retailer's messaging system")
    ],
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="HMAC key (>= 16 characters); default: a random one"),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="names the key in X-Proxima-Key-Id")
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            help="the text, with {room} and {associate}; default: 'Your fitting room ({room}) "
            "is ready. {associate} will meet you.' (a replaced webhook keeps its text)",
        ),
    ] = None,
) -> None:
    """Set (or replace) the store's messaging webhook; prints its secret (shown only now).

    Only customers who granted room_messages (for the store, or everywhere) are messaged.
    """
    hook = _run(
        set_messaging(ServiceSettings(), store, url, secret=secret, key_id=key_id, message=message)
    )
    typer.echo(json.dumps({"store_id": store, **hook.public(), "secret": hook.secret}))


@messaging_app.command("show")
def messaging_show(
    store: Annotated[str, typer.Option("--store", help="store id")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=50, help="receipts shown")] = 20,
) -> None:
    """The store's messaging webhook (no secret), then its latest results, newest first.

    One JSON object per line; a result is queued, sent, failed or skipped_no_consent.
    """
    hook, receipts = _run(show_messaging(ServiceSettings(), store, limit))
    if hook is None:
        typer.echo(
            f"no messaging webhook in {store}: proxima notifier messaging set --store {store}"
            " --url https://..."
        )
    else:
        typer.echo(json.dumps({"store_id": store, **hook.public()}))
    for row in receipts:
        typer.echo(json.dumps(row))


@messaging_app.command("remove")
def messaging_remove(store: Annotated[str, typer.Option("--store", help="store id")]) -> None:
    """Remove the store's messaging webhook: no customer of it is messaged any more."""
    _run(_with_messaging(ServiceSettings(), lambda m: m.remove(store)))
    typer.echo(f"removed the messaging webhook of {store}")


async def outcomes_report(services: ServiceSettings, store: str, days: int) -> OutcomeReport:
    """The store's outcomes over ``days`` store-local days ending today."""
    make = _routing(services)

    async def run(d: Directory) -> OutcomeReport:
        routing = await make(d).get(store)
        names = await _staff_names(d, store)
        repo = Outcomes(d.redis, services.redis_prefix)
        return await repo.report(store, days, routing.midnight(utc_now()), routing.timezone, names)

    return await _with_directory(services, run)


@notifier_app.command("outcomes")
def outcomes_command(
    store: Annotated[str, typer.Option("--store", help="store id")],
    days: Annotated[
        int, typer.Option("--days", help="the period: 1 (today), 7 or 30 store-local days")
    ] = 1,
    csv_rows: Annotated[
        str | None,
        typer.Option("--csv", help="print one table as CSV: visits, associates or days"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the whole report as JSON")] = False,
) -> None:
    """What happened after the alerts, per store-local day.

    Arrivals greeted and unserved, time to claim, rooms ready before arrival; per associate;
    per visit for customers with analytics consent."""
    if days not in PERIODS:
        raise fail(f"--days must be one of {', '.join(str(p) for p in PERIODS)}, not {days}")
    if csv_rows is not None and csv_rows not in ("visits", "associates", "days"):
        raise fail(f"--csv must be visits, associates or days, not {csv_rows!r}")
    report = _run(outcomes_report(ServiceSettings(), store, days))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    if csv_rows is not None:
        typer.echo(report.csv(csv_rows), nl=False)
        return
    t = report.totals
    typer.echo(f"{store}, {days} day(s) from {report.since.isoformat()} ({report.timezone})")
    typer.echo(
        f"arrivals {t['arrivals']}: greeted {t['claimed']}, unserved {t['unserved']}, "
        f"done {t['done']}; on her way {t['approaches']}"
    )
    typer.echo(
        f"median time to claim {t['median_time_to_claim_s']} s; rooms ready before arrival "
        f"{t['room_ready']}, not ready {t['room_not_ready']} (median head start "
        f"{t['median_room_ready_before_arrival_s']} s)"
    )
    for a in report.associates:
        typer.echo(
            f"  {a['name']}: claimed {a['claimed']}, done {a['done']}, "
            f"median time to claim {a['median_time_to_claim_s']} s"
        )
    typer.echo(f"visits with analytics consent: {len(report.visits)} (--csv visits)")


# --- proxima notifier serve -----------------------------------------------------------
@notifier_app.command("serve")
def notifier_serve(
    host: Annotated[
        str | None, typer.Option(help="console address (default PROXIMA_NOTIFIER_HTTP_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="console port (default PROXIMA_NOTIFIER_HTTP_PORT)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Route, deliver and escalate alerts; serve the associate console and API."""
    from notifier.service import Notifier
    from notifier.settings import NotifierSettings

    verbose_logging(verbose)
    services = ServiceSettings()
    if not services.kafka:
        raise fail(
            "PROXIMA_KAFKA is not set: the notifier needs a Kafka broker (proxima up starts one)"
        )
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    settings = NotifierSettings(**overrides)
    out.print(
        f"notifier: console on http://{settings.http_host}:{settings.http_port}/", highlight=False
    )
    if settings.cookie_secure:
        out.print(
            "notifier: the session cookie is Secure: open the console through HTTPS (a TLS "
            "proxy) or http://localhost; PROXIMA_NOTIFIER_COOKIE_SECURE=false turns it off",
            highlight=False,
        )
    run_forever(Notifier(services, settings=settings).run())
