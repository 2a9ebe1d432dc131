"""The gateway agent: scanner sources, presence, outbox and MQTT publishing.

The edge never holds customer identity keys: it forwards the rotating EIDs it hears.
"""
