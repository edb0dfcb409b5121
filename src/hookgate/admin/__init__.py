"""Admin: the operator's listener, health, readiness, metrics and the admin API.

Reads the store through its protocol and the dispatcher's live state; every change
(retry, replay, pause) goes through the same store and dispatcher calls as the
rest of hookgate. May import: config, store, outbound (the dispatcher's state),
metrics, wire names. Never inbound or cli.
"""
