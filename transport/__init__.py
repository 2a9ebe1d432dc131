"""Broker and store clients chosen by URL scheme (mqtt://, mqtts://, kafka://, redis://).

No business logic lives here; edge, stream and notifier share these clients.
"""
