"""A ``[verify]`` table for every provider that can sign and verify with it: the
secrets, public keys and options the generic tests (registry, properties, ``send``)
use. Key pairs are generated once per run; a private key stands for its public half
in ``public_keys``, so the same table signs (``hookgate send``) and verifies."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from hookgate import config


def private_pem(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """The public half, as a source's public_keys holds it (a private key is refused)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def certificate_pem(key: rsa.RSAPrivateKey) -> str:
    """A self-signed certificate of ``key``, as PayPal's would be configured."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36500))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
P256_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_P256_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# name -> (secrets, options); the table of one provider that signs and verifies.
TABLES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "asana": (["asana-hook-secret"], {}),
    "discord": ([], {"public_keys": [private_pem(ED25519_KEY)]}),
    "dropbox": (["dropbox-app-secret"], {}),
    "ed25519": (
        [],
        {
            "public_keys": [private_pem(ED25519_KEY)],
            "header": "X-Signature",
            "encoding": "base64",
            "timestamp_header": "X-Timestamp",
            "signed_payload": "{timestamp}.{body}",
        },
    ),
    "hubspot": (["hubspot-client-secret"], {}),
    "intercom": (["intercom-client-secret"], {}),
    "linear": (["lin_wh_secret"], {}),
    "mailgun": (["key-mailgun-signing"], {}),
    "meta": (["meta-app-secret"], {"verify_token": "meta-verify-token"}),
    "msgraph": (["graph-client-state"], {}),
    "paddle": (["pdl_ntfset_secret"], {}),
    "paypal": (["WH-1234567890"], {"public_keys": [private_pem(RSA_KEY)]}),
    "sendgrid": ([], {"public_keys": [private_pem(P256_KEY)]}),
    "square": (["square-signature-key"], {}),
    "twilio": (["twilio-auth-token"], {}),
    "twitter": (["twitter-consumer-secret"], {}),
    "zoom": (["zoom-secret-token"], {}),
}

# The same providers, with keys or secrets that are not the signer's.
OTHER_TABLES: dict[str, tuple[list[str], dict[str, Any]]] = {
    name: (
        ["someone-else"] if secrets else [],
        {
            **options,
            **(
                {
                    "public_keys": [
                        private_pem(
                            {
                                "discord": OTHER_ED25519_KEY,
                                "ed25519": OTHER_ED25519_KEY,
                                "sendgrid": OTHER_P256_KEY,
                                "paypal": OTHER_RSA_KEY,
                            }[name]
                        )
                    ]
                }
                if "public_keys" in options
                else {}
            ),
        },
    )
    for name, (secrets, options) in TABLES.items()
}

# Providers whose signature covers fields inside the body, which ``prepared`` fills in:
# a body that is not a JSON object cannot be sent as them.
BODY_FIELDS = frozenset({"linear", "mailgun", "msgraph"})
# Providers whose signature covers the URL.
URL_BOUND = frozenset({"hubspot", "square", "twilio"})


def table(name: str, tolerance: float = 300, *, other: bool = False) -> config.VerifyConfig:
    secrets, options = (OTHER_TABLES if other else TABLES)[name]
    return config.VerifyConfig(
        scheme=name, secrets=list(secrets), tolerance=config.Duration(tolerance), **options
    )
