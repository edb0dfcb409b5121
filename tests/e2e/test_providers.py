"""End to end: ``hookgate send --provider NAME`` signs as each provider, and the real
daemon (``provider = NAME`` sources) accepts, stores and delivers it; handshakes are
answered by the daemon and never stored."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from .conftest import Daemon, Downstream, run_cli

SECRET = "e2e-provider-secret"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def certificate_pem(key: rsa.RSAPrivateKey) -> str:
    """A self-signed certificate, standing for PayPal's."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paypal-e2e")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name)
    builder = builder.public_key(key.public_key()).serial_number(1)
    builder = builder.not_valid_before(start).not_valid_after(start + datetime.timedelta(36500))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
P256_KEY = ec.generate_private_key(ec.SECP256R1())
ED25519_PEM, P256_PEM, RSA_PEM = (private_pem(k) for k in (ED25519_KEY, P256_KEY, RSA_KEY))


def public_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """What the source is configured with: the public half (a private key is refused)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# name -> (the source's [verify] table, the key file `send` signs with, if any)
PROVIDERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "asana": ({"secrets": [SECRET]}, None),
    "discord": ({"public_keys": [public_pem(ED25519_KEY)]}, ED25519_PEM),
    "dropbox": ({"secrets": [SECRET]}, None),
    "ed25519": (
        {
            "public_keys": [public_pem(ED25519_KEY)],
            "header": "X-Signature",
            "timestamp_header": "X-Timestamp",
            "signed_payload": "{timestamp}.{body}",
        },
        ED25519_PEM,
    ),
    "hubspot": ({"secrets": [SECRET]}, None),
    "intercom": ({"secrets": [SECRET]}, None),
    "linear": ({"secrets": [SECRET]}, None),
    "mailgun": ({"secrets": [SECRET]}, None),
    "meta": ({"secrets": [SECRET], "verify_token": "e2e-token"}, None),
    "msgraph": ({"secrets": [SECRET]}, None),
    "paddle": ({"secrets": [SECRET]}, None),
    "paypal": (
        {"secrets": ["WH-E2E"], "public_keys": [certificate_pem(RSA_KEY)]},
        RSA_PEM,
    ),
    "sendgrid": ({"public_keys": [public_pem(P256_KEY)]}, P256_PEM),
    "square": ({"secrets": [SECRET]}, None),
    "twilio": ({"secrets": [SECRET]}, None),
    "twitter": ({"secrets": [SECRET]}, None),
    "zoom": ({"secrets": [SECRET]}, None),
}


def config(downstream: Downstream) -> dict[str, Any]:
    sources: dict[str, Any] = {
        name: {"path": f"/hooks/{name}", "provider": name, "verify": verify}
        for name, (verify, _) in PROVIDERS.items()
    }
    sources["paddle"]["allow_ips"] = []  # Paddle's published ranges, overridden for 127.0.0.1
    return {
        "sources": sources,
        "destinations": {"all": {"url": downstream.url(), "sources": list(PROVIDERS)}},
    }


def send_args(name: str, daemon: Daemon, tmp_path: Path) -> list[str]:
    verify, key = PROVIDERS[name]
    args = ["send", daemon.url(f"/hooks/{name}"), "--provider", name]
    if verify.get("secrets"):
        args += ["--secret", verify["secrets"][0]]
    if key is not None:
        key_file = tmp_path / f"{name}.pem"
        key_file.write_text(key)
        args += ["--key-file", str(key_file)]
    if name == "ed25519":
        args += ["--header", "X-Signature", "--timestamp-header", "X-Timestamp"]
        args += ["--signed-payload", "{timestamp}.{body}"]
    body_file = tmp_path / f"{name}.body"
    if name == "twilio":
        args += ["--content-type", "application/x-www-form-urlencoded"]
        body_file.write_bytes(b"MessageSid=SM1&Body=hello")
    else:
        body = {"type": "demo.created", "id": f"evt_{name}", "event_id": f"evt_{name}"}
        event = {"event-data": {"event": "delivered", "id": f"m_{name}"}}
        body_file.write_bytes(orjson.dumps({**body, **event}))
    return [*args, "--body-file", str(body_file)]


@pytest.mark.slow
async def test_send_signs_as_every_provider_and_the_daemon_delivers_it(
    start_daemon: Any, downstream: Downstream, tmp_path: Path
) -> None:
    daemon = await start_daemon(**config(downstream))
    for name in PROVIDERS:
        ran = await asyncio.to_thread(run_cli, *send_args(name, daemon, tmp_path))
        assert ran.returncode == 0, (name, ran.stdout, ran.stderr)
        assert ran.stdout.startswith("HTTP 202"), (name, ran.stdout)
    received = await downstream.wait_count(len(PROVIDERS))
    assert sorted(r.headers["Hookgate-Source"] for r in received) == sorted(PROVIDERS)
    assert daemon.query("SELECT count(*) FROM messages") == [(len(PROVIDERS),)]


@pytest.mark.slow
async def test_another_secret_is_refused_by_the_daemon(
    start_daemon: Any, downstream: Downstream, tmp_path: Path
) -> None:
    daemon = await start_daemon(**config(downstream))
    for name in ("twilio", "hubspot", "mailgun", "paddle", "zoom"):
        args = send_args(name, daemon, tmp_path)
        args[args.index("--secret") + 1] = "not-the-secret"
        ran = await asyncio.to_thread(run_cli, *args)
        assert ran.returncode == 1 and ran.stdout.startswith("HTTP 401"), (name, ran.stdout)
    assert daemon.query("SELECT count(*) FROM messages") == [(0,)]


@pytest.mark.slow
async def test_the_daemon_answers_handshakes_and_stores_none(
    start_daemon: Any, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**config(downstream))
    meta = {"hub.mode": "subscribe", "hub.verify_token": "e2e-token", "hub.challenge": "42"}
    async with client.get(daemon.url("/hooks/meta"), params=meta) as reply:
        assert (reply.status, await reply.text()) == (200, "42")
    async with client.get(
        daemon.url("/hooks/meta"), params={**meta, "hub.verify_token": "x"}
    ) as reply:
        assert reply.status == 403
    async with client.get(daemon.url("/hooks/twitter"), params={"crc_token": "abc"}) as reply:
        digest = hmac.new(SECRET.encode(), b"abc", hashlib.sha256).digest()
        expected = {"response_token": "sha256=" + base64.b64encode(digest).decode()}
        assert (reply.status, await reply.json()) == (200, expected)
    async with client.post(daemon.url("/hooks/asana"), headers={"X-Hook-Secret": SECRET}) as reply:
        assert (reply.status, reply.headers["X-Hook-Secret"]) == (200, SECRET)
    assert daemon.query("SELECT count(*) FROM messages") == [(0,)]
    assert any(e.get("event") == "handshake.answered" for e in daemon.log_events())
