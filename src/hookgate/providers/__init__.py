"""The providers hookgate verifies, by scheme name: one module each, registered here.

A provider (``Provider``) knows how its requests are verified (``verifier``), where
its event type and id are (``event_type``, ``event_id``), how ``hookgate send``
signs like it (``sign``) and which signed handshake is answered rather than stored
(``handshake``). Config, the ingress and the CLI take every scheme from here.

Nothing here imports config at run time: config imports this registry to check
scheme names, so ``Settings`` describes a ``[verify]`` table as a protocol.
"""

from __future__ import annotations

from hookgate.providers import (
    asana,
    basic,
    common,
    discord,
    dropbox,
    ed25519,
    github,
    gitlab,
    hubspot,
    intercom,
    linear,
    mailgun,
    meta,
    msgraph,
    none,
    paddle,
    paypal,
    sendgrid,
    shopify,
    slack,
    square,
    standard,
    stripe,
    twilio,
    twitter,
    zoom,
)
from hookgate.providers import hmac as generic_hmac
from hookgate.providers.common import (
    Answer,
    Greeter,
    Greeting,
    HandshakeRefused,
    Provider,
    Request,
    Settings,
    Verifier,
)
from hookgate.providers.standard import standard_secret_key

__all__ = [
    "SCHEMES",
    "Answer",
    "Greeter",
    "Greeting",
    "HandshakeRefused",
    "Provider",
    "Request",
    "Settings",
    "Verifier",
    "get",
    "standard_secret_key",
]

# In the order the docs list them.
_PROVIDERS: dict[str, common.Provider] = {
    provider.name: provider
    for provider in (
        none.PROVIDER,
        generic_hmac.PROVIDER,
        standard.PROVIDER,
        github.PROVIDER,
        stripe.PROVIDER,
        shopify.PROVIDER,
        slack.PROVIDER,
        gitlab.PROVIDER,
        basic.PROVIDER,
        # Then in alphabetical order.
        asana.PROVIDER,
        discord.PROVIDER,
        dropbox.PROVIDER,
        ed25519.PROVIDER,
        hubspot.PROVIDER,
        intercom.PROVIDER,
        linear.PROVIDER,
        mailgun.PROVIDER,
        meta.PROVIDER,
        msgraph.PROVIDER,
        paddle.PROVIDER,
        paypal.PROVIDER,
        sendgrid.PROVIDER,
        square.PROVIDER,
        twilio.PROVIDER,
        twitter.PROVIDER,
        zoom.PROVIDER,
    )
}

SCHEMES: tuple[str, ...] = tuple(_PROVIDERS)
"""Every scheme name, in the order the docs list them."""


def get(name: str) -> Provider:
    """The provider registered as ``name``; ``KeyError`` for an unknown one."""
    return _PROVIDERS[name]
