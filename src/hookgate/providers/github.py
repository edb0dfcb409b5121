"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

The legacy SHA-1 ``X-Hub-Signature`` header, which GitHub also sends, is ignored.
"""

from __future__ import annotations

from hookgate.providers import common

PROVIDER = common.hmac_preset(
    "github",
    common.HmacShape(header="X-Hub-Signature-256", prefix="sha256="),
    event_type=("header:X-GitHub-Event",),
    event_id=("header:X-GitHub-Delivery",),
)
