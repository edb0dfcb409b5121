"""Testing tools: ``hookgate send`` signs like a provider, ``hookgate listen`` receives.

``send`` takes the options of a source's ``[verify]`` table and signs the way that
scheme's provider does, so whatever it sends is what hookgate's ingress accepts for
the same table. ``listen`` is the other end: a receiver that prints what hookgate
delivers and checks hookgate's outbound signature with hookgate's own verifier.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from aiohttp import web

from hookgate import config, verify
from hookgate.cli import client
from hookgate.errors import VerificationFailed
from hookgate.outbound import signing

# Room for hookgate's batches, which can be far larger than one inbound body.
_MAX_RECEIVED = 64 * 1024**2
_SHOWN_HEADERS = ("content-type", "x-webhook-signature")
_SHOWN_PREFIXES = ("webhook-", "hookgate-")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# -- signing like a provider ----------------------------------------------------------


def check_signing(options: config.VerifyConfig) -> None:
    """Raise ``ValueError`` unless ``options`` can sign: the rules of a source's table."""
    verify.build_verifier(options)
    if options.scheme == "standard":
        try:
            signing.standard_key(options.secrets[0])
        except ValueError:
            raise ValueError('expected a "whsec_<base64>" secret') from None


def signature_headers(options: config.VerifyConfig, body: bytes, now: int) -> dict[str, str]:
    """The headers with which the provider of ``options.scheme`` signs ``body`` at ``now``.

    Signs with the first of ``options.secrets``; call ``check_signing`` first.
    """
    secret = options.secrets[0] if options.secrets else ""
    return _SIGNERS[options.scheme](options, secret, body, now)


def _mac(key: bytes, algorithm: str, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=algorithm)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _sign_none(options: config.VerifyConfig, secret: str, body: bytes, now: int) -> dict[str, str]:
    return {}


def _sign_hmac(options: config.VerifyConfig, secret: str, body: bytes, now: int) -> dict[str, str]:
    """The generic scheme: ``header: prefix + encode(HMAC(signed_payload))``."""
    stamp = str(now)
    before, _, after = options.signed_payload.replace("{timestamp}", stamp).partition("{body}")
    digest = _mac(secret.encode(), options.algorithm, before.encode(), body, after.encode())
    encoded = digest.hex() if options.encoding == "hex" else base64.b64encode(digest).decode()
    headers = {str(options.header): options.prefix + encoded}
    if options.timestamp_header is not None:
        headers[options.timestamp_header] = stamp
    return headers


def _sign_github(
    options: config.VerifyConfig, secret: str, body: bytes, now: int
) -> dict[str, str]:
    """X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>."""
    return {"X-Hub-Signature-256": "sha256=" + _mac(secret.encode(), "sha256", body).hex()}


def _sign_shopify(
    options: config.VerifyConfig, secret: str, body: bytes, now: int
) -> dict[str, str]:
    """X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>."""
    digest = _mac(secret.encode(), "sha256", body)
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()}


def _sign_slack(options: config.VerifyConfig, secret: str, body: bytes, now: int) -> dict[str, str]:
    """X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">."""
    digest = _mac(secret.encode(), "sha256", f"v0:{now}:".encode(), body)
    return {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + digest.hex()}


def _sign_stripe(
    options: config.VerifyConfig, secret: str, body: bytes, now: int
) -> dict[str, str]:
    """Stripe-Signature: t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    # Stripe keys the HMAC with the whole "whsec_..." string, not a decoded key.
    digest = _mac(secret.encode(), "sha256", f"{now}.".encode(), body)
    return {"Stripe-Signature": f"t={now},v1={digest.hex()}"}


def _sign_standard(
    options: config.VerifyConfig, secret: str, body: bytes, now: int
) -> dict[str, str]:
    """Standard Webhooks: webhook-id, webhook-timestamp and webhook-signature."""
    # A fresh id per send: a source's default event_id is webhook-id, so a repeat
    # would be answered as a duplicate.
    message_id = "msg_" + secrets.token_hex(8)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(now)}
    headers.update(signing.Signer("standard", secret).headers(message_id, now, body))
    return headers


def _sign_gitlab(
    options: config.VerifyConfig, secret: str, body: bytes, now: int
) -> dict[str, str]:
    """X-Gitlab-Token: the secret itself."""
    return {"X-Gitlab-Token": secret}


def _sign_basic(options: config.VerifyConfig, secret: str, body: bytes, now: int) -> dict[str, str]:
    """Authorization: Basic base64("user:password")."""
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


_SIGNERS: dict[config.Scheme, Callable[[config.VerifyConfig, str, bytes, int], dict[str, str]]] = {
    "none": _sign_none,
    "hmac": _sign_hmac,
    "standard": _sign_standard,
    "github": _sign_github,
    "stripe": _sign_stripe,
    "shopify": _sign_shopify,
    "slack": _sign_slack,
    "gitlab": _sign_gitlab,
    "basic": _sign_basic,
}


# -- send -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A test webhook: where it goes, what it carries, how it is signed."""

    url: str
    body: bytes
    signing: config.VerifyConfig
    content_type: str = "application/json"
    extra_headers: tuple[tuple[str, str], ...] = ()


def request_headers(outgoing: Outgoing, now: int) -> dict[str, str]:
    """Every header of the request; ``extra_headers`` come last and win."""
    headers = {"User-Agent": client.USER_AGENT, "Content-Type": outgoing.content_type}
    headers.update(signature_headers(outgoing.signing, outgoing.body, now))
    headers.update(outgoing.extra_headers)
    return headers


def send(outgoing: Outgoing, timeout: float = client.DEFAULT_TIMEOUT) -> client.HttpResponse:
    """POST the webhook, signed now; the answer whatever its status."""
    headers = request_headers(outgoing, int(time.time()))
    return client.http_request(
        "POST", outgoing.url, headers=headers, body=outgoing.body, timeout=timeout
    )


# -- listen -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """How ``listen`` answers: where, on which path, with what status, checking what."""

    host: str
    port: int
    path: str
    status: int
    verifier: verify.Verifier | None


def outbound_verifier(
    standard_secret: str | None, hmac_secret: str | None
) -> verify.Verifier | None:
    """hookgate's outbound signature as an inbound verifier: ``sign = "standard"`` or
    ``sign = "hmac-sha256"``; None when there is no secret to check with.

    Raises ``ValueError`` for a secret of the wrong form.
    """
    if standard_secret is not None:
        return verify.build_verifier(
            config.VerifyConfig(scheme="standard", secrets=[standard_secret])
        )
    if hmac_secret is not None:
        return verify.build_verifier(
            config.VerifyConfig(scheme="hmac", secrets=[hmac_secret], header="X-Webhook-Signature")
        )
    return None


def verdict(verifier: verify.Verifier | None, headers: Mapping[str, str], body: bytes) -> str:
    """``valid``, ``INVALID (<reason>)`` or ``not checked``."""
    if verifier is None:
        return "not checked"
    try:
        verifier.verify(headers, body, time.time())
    except VerificationFailed as exc:
        return f"INVALID ({exc.reason})"
    return "valid"


def describe(method: str, path: str, headers: Mapping[str, str], body: bytes, check: str) -> str:
    """What ``listen`` prints for one request."""
    shown = [
        f"{client.printable(name)}: {client.printable(value)}"
        for name, value in headers.items()
        if name.lower() in _SHOWN_HEADERS or name.lower().startswith(_SHOWN_PREFIXES)
    ]
    text = client.printable(
        body.decode("utf-8", errors="replace").removesuffix("\n"), multiline=True
    )
    return "\n".join(
        [
            f"--- {method} {client.printable(path)}",
            *shown,
            f"signature: {check}",
            f"body ({len(body)} bytes):",
            text,
            "",
        ]
    )


async def listen(receiver: Receiver, out: TextIO = sys.stdout) -> None:
    """Receive and print webhooks until SIGINT or SIGTERM.

    Raises ``OSError`` when the address cannot be listened on.
    """

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path != receiver.path:
            print(f"--- {request.method} {client.printable(request.path)}: 404", file=out)
            out.flush()
            return web.Response(status=404)
        check = verdict(receiver.verifier, request.headers, body)
        print(describe(request.method, request.path, request.headers, body, check), file=out)
        out.flush()
        return web.Response(status=receiver.status)

    app = web.Application(client_max_size=_MAX_RECEIVED)
    app.router.add_route("*", "/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before "listening" is printed: whoever reads that line may signal at once.
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        await web.TCPSite(runner, receiver.host, receiver.port).start()
        print(f"listening on {_address(runner)}{receiver.path} (Ctrl-C to stop)", file=out)
        out.flush()
        await stop.wait()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def _address(runner: web.AppRunner) -> str:
    # The bound address, so "--listen 127.0.0.1:0" shows the port it got.
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
