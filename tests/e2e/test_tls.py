"""End to end: the ingress speaking HTTPS itself (``server.tls_cert`` / ``tls_key``).

A self-signed certificate for 127.0.0.1 is made for each test run (with the
``cryptography`` package when installed, else the ``openssl`` command). The daemon
must serve TLS 1.2+ only, and refuse to start, with one clear line on stderr and no
traceback, when the files are missing, unreadable or do not belong together.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from .conftest import HOST, Daemon, Downstream, free_port, run_cli, to_toml

StartDaemon = Callable[..., Awaitable[Daemon]]


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path
    other_key: Path  # a valid key that does not belong to ``cert``


def _with_cryptography(folder: Path) -> Pem | None:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = Pem(folder / "cert.pem", folder / "key.pem", folder / "other-key.pem")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, private in ((pem.key, key), (pem.other_key, other)):
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return pem


def _with_openssl(folder: Path) -> Pem:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("neither the cryptography package nor the openssl command is available")
    pem = Pem(folder / "cert.pem", folder / "key.pem", folder / "other-key.pem")
    curve = ["-pkeyopt", "ec_paramgen_curve:prime256v1"]
    certificate = ["-x509", "-newkey", "ec", *curve, "-nodes", "-days", "1", "-subj", f"/CN={HOST}"]
    san = ["-addext", f"subjectAltName=IP:{HOST}"]
    commands = [
        [openssl, "req", *certificate, *san, "-keyout", str(pem.key), "-out", str(pem.cert)],
        [openssl, "genpkey", "-algorithm", "EC", *curve, "-out", str(pem.other_key)],
    ]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
    return pem


@pytest.fixture
def pem(tmp_path: Path) -> Pem:
    folder = tmp_path / "tls"
    folder.mkdir()
    return _with_cryptography(folder) or _with_openssl(folder)


def trusting(pem: Pem) -> ssl.SSLContext:
    """A client context that trusts exactly our self-signed certificate."""
    return ssl.create_default_context(cafile=str(pem.cert))


# Ingest processes (server.ingest_processes) serve TLS from the same files.
@pytest.mark.parametrize("ingest_processes", [0, 2])
async def test_https_ingress_accepts_a_webhook(
    start_daemon: StartDaemon, downstream: Downstream, pem: Pem, ingest_processes: int
) -> None:
    daemon = await start_daemon(
        server={
            "tls_cert": str(pem.cert),
            "tls_key": str(pem.key),
            "ingest_processes": ingest_processes,
        },
        sources={"shop": {"path": "/hooks/shop"}},
        destinations={"orders": {"url": downstream.url("/orders"), "sources": ["shop"]}},
    )
    url = f"https://{HOST}:{daemon.ingress_port}/hooks/shop"
    body = b'{"type":"order.created","via":"tls"}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=body, headers={"Content-Type": "application/json"}, ssl=trusting(pem)
        ) as response,
    ):
        assert response.status == 202, await response.text()
        answer = await response.json()
    (received,) = await downstream.wait_count(1)
    assert received.body == body
    assert received.webhook_id == answer["id"]

    # Plain HTTP on the TLS port is not served.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(daemon.url("/hooks/shop"), data=body) as response:
                await response.read()
    assert int(daemon.query("SELECT count(*) FROM messages")[0][0]) == 1


def _client_context(pem: Pem, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = trusting(pem)
    with warnings.catch_warnings():
        # TLSVersion.TLSv1_1 is deprecated: that is the point of offering it.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    # Security level 0 lets this client offer TLS 1.1 at all, so that a refusal is
    # the server's answer, not the local OpenSSL policy's.
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The TLS version agreed, after a complete handshake."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST), 10
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.version()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


@pytest.mark.parametrize("ingest_processes", [0, 2])
async def test_tls_1_1_is_refused_and_1_2_accepted(
    start_daemon: StartDaemon, pem: Pem, ingest_processes: int
) -> None:
    daemon = await start_daemon(
        server={
            "tls_cert": str(pem.cert),
            "tls_key": str(pem.key),
            "ingest_processes": ingest_processes,
        },
        sources={"shop": {"path": "/hooks/shop"}},
    )
    port = daemon.ingress_port
    # The server answers a TLS 1.1 ClientHello with a protocol_version alert (or just
    # drops the connection): either way no session, and not because this client could
    # not offer TLS 1.1 in the first place.
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        await _handshake(port, _client_context(pem, ssl.TLSVersion.TLSv1_1))
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value), refused.value
    assert await _handshake(port, _client_context(pem, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    # The refused handshake hurt nothing: the listener still serves.
    async with (
        aiohttp.ClientSession() as session,
        session.get(daemon.admin_url("/healthz")) as health,
    ):
        assert health.status == 200


# -- refusing to start --------------------------------------------------------------


def _serve_with(
    folder: Path, cert: Path | str, key: Path | str
) -> subprocess.CompletedProcess[str]:
    config = {
        "server": {"listen": f"{HOST}:{free_port()}", "tls_cert": str(cert), "tls_key": str(key)},
        "admin": {"listen": f"{HOST}:{free_port()}"},
        "storage": {"path": "hookgate.db"},
        "sources": {"shop": {"path": "/hooks/shop"}},
    }
    path = folder / "hookgate.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    # A daemon that did start would run until killed: run_cli's timeout fails the test.
    return run_cli("serve", "-c", str(path), timeout=20, cwd=folder)


def _bad_files(pem: Pem, folder: Path) -> dict[str, tuple[Path, Path]]:
    garbage = folder / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n", encoding="utf-8")
    return {
        "mismatched key": (pem.cert, pem.other_key),
        "missing key": (pem.cert, folder / "no-such-key.pem"),
        "missing cert": (folder / "no-such-cert.pem", pem.key),
        "cert is a folder": (folder, pem.key),
        "key is a folder": (pem.cert, folder),
        "cert not PEM": (garbage, pem.key),
        "key and cert swapped": (pem.key, pem.cert),
    }


@pytest.mark.parametrize(
    "case",
    [
        "mismatched key",
        "missing key",
        "missing cert",
        "cert is a folder",
        "key is a folder",
        "cert not PEM",
        "key and cert swapped",
    ],
)
def test_bad_tls_files_stop_start_up_with_one_clear_line(
    tmp_path: Path, pem: Pem, case: str
) -> None:
    cert, key = _bad_files(pem, tmp_path)[case]
    result = _serve_with(tmp_path, cert, key)
    assert result.returncode not in (0, None), (result.stdout, result.stderr)
    # 78 is "the config is invalid"; 1 "could not start": either is a clean refusal.
    assert result.returncode in (1, 78), (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, result.stderr
    assert "server.tls_cert" in lines[0] and "tls_key" in lines[0], lines[0]
