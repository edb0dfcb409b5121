"""Slack (Events API): ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">``
with ``<ts>`` from ``X-Slack-Request-Timestamp``; and the ``url_verification``
handshake, answered with its challenge instead of being stored."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from hookgate.providers import common


def _url_verification(headers: Mapping[str, str], body: bytes) -> bytes | None:
    """Slack's signed url_verification handshake: echo the challenge, store nothing."""
    # Cheap before parsing: every other Events API body is stored as usual.
    if b"url_verification" not in body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("type") != "url_verification":
        return None
    challenge = document.get("challenge")
    return orjson.dumps({"challenge": challenge}) if isinstance(challenge, str) else None


PROVIDER = common.hmac_preset(
    "slack",
    common.HmacShape(
        header="X-Slack-Signature",
        prefix="v0=",
        timestamp_header="X-Slack-Request-Timestamp",
        signed_payload="v0:{timestamp}:{body}",
    ),
    event_type=("json:event.type", "json:type"),
    event_id=("json:event_id",),
    answer=_url_verification,
)
