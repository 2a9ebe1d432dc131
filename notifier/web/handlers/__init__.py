"""The console's request handlers, one module per resource.

Each resource's handlers are methods of a frozen dataclass holding what they need (the
app wires them in ``notifier.web.app``); ``eq=False`` keeps them compared and hashed by
identity, as their bound methods are the routes.
"""
