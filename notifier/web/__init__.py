"""The associate console and its JSON API, served by every notifier instance (aiohttp).

Sign-in is per associate (argon2 hashes in the directory); a session is a random token in
an HttpOnly, SameSite=Strict cookie, stored in Redis only as its SHA-256, with its own
CSRF token that every state-changing request must echo in ``X-CSRF-Token``. Everything a
session can see or do is scoped to its store: another store's alert answers 404, exactly
like an alert that does not exist, so ids cannot be probed.

Where things are: ``models`` (request and response bodies), ``sessions`` (the Redis
sessions), ``auth`` (who is asking, and may they), ``feed`` (the live feed's fan-out),
``errors`` (errors as JSON), ``handlers/`` (one module per resource), ``openapi`` (the
description, generated from the models) and ``app`` (the application and its routes).
"""
