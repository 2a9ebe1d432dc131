"""The notifier's errors: one root, subclasses that carry what was wrong."""

from __future__ import annotations


class NotifierError(Exception):
    """Root of every error the notifier raises on purpose."""


class InvalidInput(NotifierError):
    """A value given to the directory or the lifecycle is not acceptable."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownAssociate(NotifierError):
    def __init__(self, store_id: str, associate_id: str) -> None:
        super().__init__(f"no associate {associate_id!r} in store {store_id!r}")
        self.store_id = store_id
        self.associate_id = associate_id


class AssociateExists(NotifierError):
    def __init__(self, store_id: str, associate_id: str) -> None:
        super().__init__(f"associate {associate_id!r} already exists in store {store_id!r}")
        self.store_id = store_id
        self.associate_id = associate_id


class UnknownAlert(NotifierError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert {alert_id!r}")
        self.alert_id = alert_id


class AlertConflict(NotifierError):
    """The alert is not in a state that allows the transition (claimed by someone else, ...)."""

    def __init__(self, alert_id: str, state: str, claimed_by: str | None, reason: str) -> None:
        super().__init__(reason)
        self.alert_id = alert_id
        self.state = state
        self.claimed_by = claimed_by


class UnknownScheme(NotifierError):
    """No channel is registered for a destination's URL scheme."""

    def __init__(self, url: str, scheme: str, known: tuple[str, ...]) -> None:
        super().__init__(
            f"no delivery channel for {scheme or 'a URL without a scheme'}:"
            f" (known: {', '.join(known)})"
        )
        self.url = url
        self.scheme = scheme
        self.known = known


class TooManyDestinations(NotifierError):
    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"{owner} already has {limit} destinations of this kind: remove one first")
        self.owner = owner
        self.limit = limit


class UnknownDestination(NotifierError):
    def __init__(self, owner: str, destination_id: str) -> None:
        super().__init__(f"no destination {destination_id!r} for {owner}")
        self.owner = owner
        self.destination_id = destination_id


class NoMessagingHook(UnknownDestination):
    def __init__(self, store_id: str) -> None:
        NotifierError.__init__(self, f"store {store_id!r} has no messaging webhook")
        self.owner = f"store {store_id!r}"
        self.destination_id = "messaging"


class SignInThrottled(NotifierError):
    """Too many sign-in tries: refused before any password is checked."""

    def __init__(self, scope: str, retry_after_s: float) -> None:
        wait = max(1, int(retry_after_s + 0.999))
        super().__init__(f"too many failed sign-ins {scope}: try again in {wait} s")
        self.scope = scope
        self.retry_after_s = wait


class AckRefused(NotifierError):
    """An MQTT ack the notifier will not apply; ``reason`` is a short code for metrics.

    ``associate_mismatch`` is the one that matters: the body names another associate than
    the topic it came on (the topic is what the broker's ACL vouches for).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class AlertWithheld(NotifierError):
    """An alert not created: its customer was forgotten or revoked arrival alerts there."""

    def __init__(self, alert_id: str, reason: object) -> None:
        super().__init__(f"alert {alert_id} withheld: {reason}")
        self.alert_id = alert_id
        self.reason = reason


class UnknownRoom(NotifierError):
    def __init__(self, store_id: str, room_id: str) -> None:
        super().__init__(f"no fitting room {room_id!r} in store {store_id!r}")
        self.store_id = store_id
        self.room_id = room_id


class RoomConflict(NotifierError):
    """The room is not in a state that allows the change, or it is someone else's."""

    def __init__(self, room_id: str, state: str, held_by: str | None, reason: str) -> None:
        super().__init__(reason)
        self.room_id = room_id
        self.state = state
        self.held_by = held_by
