"""Sign-in limits, counted in Redis *before* a password is checked.

A try takes its place in each counter first (INCR is atomic), so concurrent guesses cannot
all be checked against the same old count. Per window (``login_window_s``):

- one account from one client address: ``login_attempts`` tries, then 429 until the
  window ends (the guesser's own address, not the real user's handheld, is held back);
- one client address over all accounts: ``login_client_attempts`` failed tries;
- one account from every address: past ``login_attempts`` tries, one try per pause,
  doubling from ``login_backoff_s`` up to ``login_backoff_cap_s``, so guessers spread over
  many addresses slow to one guess per pause, and the real user waits at most the cap.

A success clears the account's counts and gives the address its try back.
"""

from __future__ import annotations

from dataclasses import dataclass

from notifier.exceptions import SignInThrottled
from notifier.settings import NotifierSettings
from transport.redis import RedisClient
from transport.redis import as_text as text


@dataclass(frozen=True, slots=True)
class Attempt:
    """One admitted try: the counters it holds a place in."""

    account: str
    pair: str
    client: str
    gate: str


class SignInLimits:
    """The three counters above, shared by every notifier instance through Redis."""

    def __init__(self, redis: RedisClient, prefix: str, settings: NotifierSettings) -> None:
        self.redis = redis
        self.prefix = f"{prefix}notifier:login:"
        self.settings = settings

    async def admit(self, store: str, associate: str, client: str) -> Attempt:
        """Count one try; raise :class:`SignInThrottled` if it must not be checked."""
        s = self.settings
        who = f"{store}:{associate}"
        attempt = Attempt(
            account=f"{self.prefix}account:{who}",
            pair=f"{self.prefix}pair:{who}:{client}",
            client=f"{self.prefix}client:{client}",
            gate=f"{self.prefix}gate:{who}",
        )
        pair, by_client = await self._count(attempt.pair, attempt.client)
        if pair > s.login_attempts:
            raise SignInThrottled(
                "for this account from this address", await self._ttl(attempt.pair)
            )
        if by_client > s.login_client_attempts:
            raise SignInThrottled("from this address", await self._ttl(attempt.client))
        (account,) = await self._count(attempt.account)
        beyond = account - s.login_attempts
        if beyond > 0:
            pause = min(s.login_backoff_cap_s, s.login_backoff_s * 2.0 ** (beyond - 1))
            # SET NX: of every try arriving during a pause, exactly one goes through.
            if not await self.redis.set(attempt.gate, "1", px=max(1, int(pause * 1000)), nx=True):
                wait_ms = int(await self.redis.pttl(attempt.gate))
                raise SignInThrottled("for this account", max(wait_ms, 0) / 1000)
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(attempt.account)
        pipe.delete(attempt.pair)
        pipe.delete(attempt.gate)
        pipe.decr(attempt.client)
        # Had the window ended meanwhile, DECR made a fresh key: give it the window too.
        pipe.expire(attempt.client, self.settings.login_window_s, nx=True)
        await pipe.execute()

    async def _count(self, *keys: str) -> list[int]:
        """INCR each key; a key's first try starts its window (SET NX EX, then INCR)."""
        window = self.settings.login_window_s
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
            pipe.expire(key, window, nx=True)  # a key left without expiry by a crash
        replies = await pipe.execute()
        return [int(text(replies[3 * i + 1])) for i in range(len(keys))]

    async def _ttl(self, key: str) -> float:
        return float(max(int(await self.redis.ttl(key)), 0))
