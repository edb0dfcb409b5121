"""What the config tests share: the documented sample, and helpers that write a
config file, load it and return its errors."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from hookgate import config
from hookgate.errors import ConfigError

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# The sample of /work/shared/design/config.md, verbatim except:
# - [sources.custom] gets a `path` (the sample's table has none, and path is required);
# - the commented-out optional keys (tls_cert, tls_key, rate_limit) are set, so that
#   every key the sample names is exercised.
SAMPLE = """
[server]                         # ingress: where providers POST webhooks
listen = "0.0.0.0:8080"          # host:port; "[::]:8080" for IPv6
max_body = "1MiB"                # larger bodies get 413 before they are read in full
request_timeout = "15s"          # the whole request must arrive within this (slow-client guard)
trusted_proxies = []             # CIDRs whose X-Forwarded-For is believed for the client IP
tls_cert = "tls/cert.pem"        # both set: the ingress speaks HTTPS itself
tls_key = "tls/key.pem"

[admin]                          # health, metrics, admin API and dashboard; keep it private
listen = "127.0.0.1:9090"
token = "${HOOKGATE_ADMIN_TOKEN}" # bearer token for /api/*; health and metrics need none

[storage]
path = "hookgate.db"             # SQLite file (WAL); the embedded default
retention = "7d"                 # delivered and dead messages older than this are pruned
sync = "full"                    # "full": fsync every group commit (survives power loss)
                                 # "normal": survives a crash of the process, not of the machine

[log]
level = "info"                   # debug | info | warning | error
format = "json"                  # json | console

[delivery]                       # defaults that every destination inherits
timeout = "10s"                  # per attempt, connect to last byte
max_attempts = 12                # then the delivery is dead (kept, retryable by hand)
max_age = "3d"                   # or dead once the message is older than this
initial_backoff = "1s"           # exponential with full jitter:
max_backoff = "1h"               #   delay = random(0, min(max, initial * 2**attempt))
concurrency = 16                 # requests in flight per destination
rate_limit = 50                  # requests per second per destination (unset: no limit)

[sources.stripe]                 # one table per inbound source; the key is its name
path = "/hooks/stripe"           # unique among sources
allow_ips = []                   # CIDRs; empty = anyone (checked after trusted_proxies)
event_type = "json:type"         # where the event type is: "json:<dotted.path>",
                                 #   "header:<Name>", or a fixed string "const:<value>"
event_id = "json:id"             # the provider's event id: duplicates of it are not
                                 #   delivered twice (same forms; unset: the scheme's
                                 #   default below, and no dedup where it has none)
dedup_window = "24h"             # how long an event_id is remembered

[sources.stripe.verify]
scheme = "stripe"                # none | hmac | standard | github | stripe | shopify |
                                 #   slack | gitlab | basic
secrets = ["${STRIPE_SECRET}"]   # several during a rotation: any one may match
tolerance = "5m"                 # for timestamped schemes: older or future requests fail

[sources.custom]
path = "/hooks/custom"

[sources.custom.verify]          # the generic HMAC scheme, for any other provider
scheme = "hmac"
header = "X-Webhook-Signature"   # where the signature is
algorithm = "sha256"             # sha1 | sha256 | sha512
encoding = "hex"                 # hex | base64
prefix = ""                      # e.g. "sha256=" is stripped before comparing
secrets = ["${CUSTOM_SECRET}"]

[destinations.orders]            # one table per downstream; the key is its name
url = "http://127.0.0.1:5000/webhooks/stripe"
sources = ["stripe"]             # which sources feed it (fan-out: many destinations
                                 #   may list the same source)
events = ["payment_intent.*", "charge.refunded"]   # glob filter on event type; unset = all
forward_headers = ["Stripe-Signature", "User-Agent"] # inbound headers passed on as-is
headers = { "X-Env" = "prod" }   # fixed extra headers
sign = "standard"                # none | standard | hmac-sha256
secret = "${ORDERS_SIGNING_SECRET}"  # standard: "whsec_<base64>"; hmac-sha256: any string
ordered = false                  # true: strict FIFO per destination (one at a time)
batch_max = 1                    # >1: up to this many events per POST (see interfaces.md)
batch_wait = "50ms"              # how long a batch may wait to fill
# timeout, max_attempts, max_age, initial_backoff, max_backoff, concurrency and
# rate_limit may be set here too, overriding [delivery]
"""

SAMPLE_ENV = {
    "HOOKGATE_ADMIN_TOKEN": "admin-token-value",
    "STRIPE_SECRET": "whsec_stripe_value",
    "CUSTOM_SECRET": "custom-secret-value",
    "ORDERS_SIGNING_SECRET": STANDARD_SECRET,
}

MINIMAL_SOURCE = """
[sources.x]
path = "/hooks/x"
"""


# Three mistakes in three tables: a loader and check-config report them all at once.
THREE_MISTAKES = """\
[server]
listen = "0.0.0.0:99999"

[delivery]
timeout = "soon"

[sources.x]
path = "/x"

[destinations.y]
url = "http://127.0.0.1:5000/"
sources = ["x"]
max_atempts = 3
"""


def write(tmp_path: Path, text: str, name: str = "hookgate.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: Mapping[str, str] | None = None) -> config.Config:
    return config.load(write(tmp_path, text), {} if env is None else env)


def errors_of(tmp_path: Path, text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of ``text`` (dedented) containing ``needle``."""
    lines = textwrap.dedent(text).splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)
