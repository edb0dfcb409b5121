"""Standard Webhooks (and Svix, which names the same headers ``svix-*``).

``webhook-signature`` holds space-separated ``v1,<base64>`` entries, each an
HMAC-SHA256 of ``"<webhook-id>.<webhook-timestamp>.<body>"`` keyed with the decoded
``whsec_`` secret.
"""

from __future__ import annotations

import base64
import re
import secrets as random_ids
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_PREFIX = "whsec_"
# The base64 alphabet (no "-" or "_", no whitespace), then at most two "=" of padding.
_BASE64 = re.compile(r"([A-Za-z0-9+/]*)(=?=?)")
_EXPECTED = 'expected a "whsec_<base64>" secret'


def standard_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the one rule for ``whsec_`` secrets.

    Accepted: ``whsec_``, then standard base64 (``A-Z a-z 0-9 + /``) of at least one
    byte, then at most two ``=`` whose count is not checked (padding may be complete,
    partial, missing or extra, as the official library ignores it). Every secret
    accepted here is accepted by the official ``standardwebhooks`` library (and so by
    Svix's), which derives the same key. That library also takes strings that are not
    of this form, by guessing: without ``whsec_``, or with characters outside the
    alphabet, which it drops ("plain-secret" and "nope" become keys). Those are
    refused here: they are mistakes far more often than secrets.

    Raises ``ValueError`` with a short reason that never shows the secret.
    """
    if not secret.startswith(_PREFIX):
        raise ValueError(f'{_EXPECTED}: it does not start with "whsec_"')
    form = _BASE64.fullmatch(secret, len(_PREFIX))
    if form is None:
        raise ValueError(f"{_EXPECTED}: not base64 after the prefix")
    encoded = form[1]
    if not encoded:
        raise ValueError(f"{_EXPECTED}: the key is empty")
    if len(encoded) % 4 == 1:
        # No byte count encodes to 4n+1 characters: a character is missing or extra.
        raise ValueError(f"{_EXPECTED}: not base64 after the prefix (its length)")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


class _StandardVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((standard_secret_key(s) for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check webhook-signature's v1 entries over "<id>.<timestamp>.<body>"."""
        prefix = "webhook-" if "webhook-id" in headers else "svix-"
        msg_id = common.header(headers, prefix + "id")
        timestamp = common.header(headers, prefix + "timestamp")
        signature_list = common.header(headers, prefix + "signature")
        common.check_timestamp(timestamp, now, self._tolerance)
        signatures = []
        # Space-separated "<version>,<base64>" items; other versions (v1a, future
        # ones) are not ours to check and are skipped.
        for item in signature_list.split():
            version, _, signature = item.partition(",")
            if version == "v1":
                signatures.append(common.from_base64(signature))
        common.match(self._macs, signatures, f"{msg_id}.{timestamp}.".encode(), body)


def _verifier(settings: Settings) -> common.Verifier:
    return _StandardVerifier(settings.secrets, settings.tolerance)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    # A fresh id per send: the default event_id is webhook-id, so a repeat would be
    # answered as a duplicate.
    message_id = "msg_" + random_ids.token_hex(8)
    key = standard_secret_key(common.first_secret(settings))
    digest = common.mac(key, "sha256", f"{message_id}.{now}.".encode(), body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


PROVIDER = common.Provider(
    name="standard",
    event_type=("json:type",),
    event_id=("header:webhook-id", "header:svix-id"),
    build=_verifier,
    signer=_sign,
)
