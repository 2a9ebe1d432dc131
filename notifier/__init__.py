"""Routing, delivery, claim/ack/escalation and the associate console."""
