"""Intercom: X-Hub-Signature, sha1 of the body
(https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make

SECRET = "intercom-client-secret"
BODY = (
    b'{"type":"notification_event","topic":"conversation.user.created",'
    b'"id":"notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3","data":{}}'
)


def test_intercom_accepts_the_sha1_signature_and_extracts_topic_and_id() -> None:
    hdrs = headers(
        X_Hub_Signature="sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    )
    make("intercom", SECRET).verify(hdrs, BODY, 0)
    assert extracted("intercom", hdrs, BODY) == (
        "conversation.user.created",
        "notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3",
    )
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("intercom", SECRET).verify(hdrs, BODY.replace(b"created", b"replied"), 0)
    with pytest.raises(VerificationFailed, match="malformed signature"):
        make("intercom", SECRET).verify(headers(X_Hub_Signature="sha256=00"), BODY, 0)
