"""Outbound: from due deliveries in the store to requests at each destination.

The dispatcher (one worker per destination), request building and outbound
signing, the retry policy, rate limits and the circuit breaker, the egress address
policy, and operational alerts (queued through the store like any webhook). May
import: config, store (types and protocol), metrics, wire names. Never inbound,
admin or cli.
"""
