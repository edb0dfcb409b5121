"""Inbound: the ingress listener, from a provider's POST to the outbox commit.

Routes a request to its source, checks method, client address (trusted proxies),
size and time, verifies the signature, extracts event type and id, and hands the
message to the store. May import: config, providers, store (types and protocol),
metrics, wire names. Never the outbound, admin or cli stages.
"""
