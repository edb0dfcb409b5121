"""PayPal (REST webhooks), verified offline: ``PAYPAL-TRANSMISSION-SIG`` is a base64
RSA-SHA256 (``PAYPAL-AUTH-ALGO: SHA256withRSA``) signature of
``<PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook id>|<CRC32 of the body,
decimal>``, made with the key of PayPal's certificate.

PayPal names that certificate in ``PAYPAL-CERT-URL`` and expects receivers to fetch
it; hookgate never fetches a URL chosen by a request (it could point anywhere). The
certificate is configured instead, in ``public_keys`` (PEM, downloaded once from the
URL PayPal's requests name, on ``api.paypal.com`` or ``api.sandbox.paypal.com``), and
the webhook id (shown beside the webhook in the developer dashboard) in ``secrets``:
it binds a signature to this webhook, so PayPal-signed events of another account are
refused. When PayPal rotates its certificate, signatures fail (401, ``no signature
matched``) until the new one is added to ``public_keys``; list both during a change.
Or verify online with PayPal's verify-webhook-signature API downstream instead.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hookgate.errors import VerificationFailed
from hookgate.providers import common, keys

if TYPE_CHECKING:
    from hookgate.providers.common import Settings

_ID = "PAYPAL-TRANSMISSION-ID"
_TIME = "PAYPAL-TRANSMISSION-TIME"
_SIGNATURE = "PAYPAL-TRANSMISSION-SIG"
_ALGORITHM = "PAYPAL-AUTH-ALGO"
_CERT_URL = "PAYPAL-CERT-URL"
_MAX_TIME_LENGTH = 40


class _PayPalVerifier:
    def __init__(self, webhook_ids: Sequence[str], certificates: Sequence[str], tolerance: float):
        self._webhook_ids = tuple(webhook_ids)
        self._keys = keys.rsa_keys(certificates)
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the RSA signature of the transmission for each configured webhook id."""
        if common.header(headers, _ALGORITHM) != "SHA256withRSA":
            raise VerificationFailed("unknown algorithm")
        transmission = common.header(headers, _ID)
        sent_at = common.header(headers, _TIME)
        common.check_timestamp(str(_unix_seconds(sent_at)), now, self._tolerance)
        signature = common.from_base64(common.header(headers, _SIGNATURE))
        checksum = zlib.crc32(body)
        for webhook_id in self._webhook_ids:
            message = f"{transmission}|{sent_at}|{webhook_id}|{checksum}".encode()
            try:
                keys.check_rsa(self._keys, signature, message)
            except VerificationFailed:
                continue
            return
        raise VerificationFailed("no signature matched")


def _unix_seconds(text: str) -> int:
    if len(text) > _MAX_TIME_LENGTH:
        raise VerificationFailed("malformed timestamp")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise VerificationFailed("malformed timestamp") from None
    if moment.tzinfo is None:
        raise VerificationFailed("malformed timestamp")
    return max(int(moment.timestamp()), 0)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    key = keys.signing_key(settings.public_keys)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key to sign with")
    transmission = f"hookgate-{now}"
    sent_at = datetime.fromtimestamp(now).astimezone().isoformat()
    message = f"{transmission}|{sent_at}|{common.first_secret(settings)}|{zlib.crc32(body)}"
    signature = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {
        _ID: transmission,
        _TIME: sent_at,
        _SIGNATURE: base64.b64encode(signature).decode(),
        _ALGORITHM: "SHA256withRSA",
        _CERT_URL: "https://api.paypal.com/v1/notifications/certs/hookgate-test",
    }


PROVIDER = common.Provider(
    name="paypal",
    event_type=("json:event_type",),
    event_id=("json:id",),
    build=lambda settings: _PayPalVerifier(
        settings.secrets, settings.public_keys, settings.tolerance
    ),
    signer=_sign,
    verify_keys=("secrets", "public_keys"),
    docs="https://developer.paypal.com/api/rest/webhooks/rest/",
)
