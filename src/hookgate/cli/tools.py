"""Testing tools: ``hookgate send`` signs like a provider, ``hookgate listen`` receives.

``send`` takes the options of a source's ``[verify]`` table and signs the way that
scheme's provider does, so whatever it sends is what hookgate's ingress accepts for
the same table. ``listen`` is the other end: a receiver that prints what hookgate
delivers and checks hookgate's outbound signature with hookgate's own verifier.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from aiohttp import web

from hookgate import config, providers, wire
from hookgate.cli import client
from hookgate.errors import VerificationFailed

# Room for hookgate's batches, which can be far larger than one inbound body.
_MAX_RECEIVED = 64 * 1024**2
_SHOWN_HEADERS = ("content-type", wire.HMAC_SIGNATURE.lower())
_SHOWN_PREFIXES = ("webhook-", "hookgate-")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# -- signing like a provider ----------------------------------------------------------


def check_signing(options: config.VerifyConfig) -> None:
    """Raise ``ValueError`` unless ``options`` can sign: the rules of a source's table."""
    providers.get(options.scheme).verifier(options)


def signature_headers(
    options: config.VerifyConfig, body: bytes, now: int, url: str = ""
) -> dict[str, str]:
    """The headers with which the provider of ``options.scheme`` signs a POST of
    ``body`` to ``url`` at ``now`` (the URL matters to the schemes that sign it).

    Signs with the first of ``options.secrets``; call ``check_signing`` first.
    """
    return providers.get(options.scheme).sign_request(options, url, body, now)


def prepared_body(options: config.VerifyConfig, body: bytes, now: int) -> bytes:
    """``body`` as the provider would send it at ``now``: the schemes that sign fields
    inside the body (Mailgun, Linear, Microsoft Graph) fill them in. ``ValueError``
    for a body they cannot fill."""
    return providers.get(options.scheme).prepared(options, body, now)


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
    headers.update(signature_headers(outgoing.signing, outgoing.body, now, outgoing.url))
    headers.update(outgoing.extra_headers)
    return headers


def send(outgoing: Outgoing, timeout: float = client.DEFAULT_TIMEOUT) -> client.HttpResponse:
    """POST the webhook, prepared and signed now; the answer whatever its status.

    ``ValueError`` for a body the provider cannot send (see ``prepared_body``).
    """
    now = int(time.time())
    body = prepared_body(outgoing.signing, outgoing.body, now)
    headers = request_headers(dataclasses.replace(outgoing, body=body), now)
    return client.http_request("POST", outgoing.url, headers=headers, body=body, timeout=timeout)


# -- listen -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """How ``listen`` answers: where, on which path, with what status, checking what."""

    host: str
    port: int
    path: str
    status: int
    verifier: providers.Verifier | None


def outbound_verifier(
    standard_secret: str | None, hmac_secret: str | None
) -> providers.Verifier | None:
    """hookgate's outbound signature as an inbound verifier: ``sign = "standard"`` or
    ``sign = "hmac-sha256"``; None when there is no secret to check with.

    Raises ``ValueError`` for a secret of the wrong form.
    """
    if standard_secret is not None:
        options = config.VerifyConfig(scheme="standard", secrets=[standard_secret])
        return providers.get("standard").verifier(options)
    if hmac_secret is not None:
        options = config.VerifyConfig(
            scheme="hmac", secrets=[hmac_secret], header="X-Webhook-Signature"
        )
        return providers.get("hmac").verifier(options)
    return None


def verdict(verifier: providers.Verifier | None, headers: Mapping[str, str], body: bytes) -> str:
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
