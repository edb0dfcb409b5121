"""What a destination receives: the request for one delivery, or for a batch of them.

Pure construction (no I/O): headers of docs/interfaces.md section 2, the batch
envelope, and the signature over the exact body that is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from multidict import CIMultiDict

from hookgate import __version__, wire
from hookgate.config import DestinationConfig
from hookgate.outbound.signing import Signer
from hookgate.store import DueDelivery, format_time
from hookgate.transform import Transformed, TransformInput

USER_AGENT = f"hookgate/{__version__}"
_VIA = wire.VIA.lower()


Header = tuple[str, str]
# Headers as they are built: by lower-cased name, so that a later header replaces an
# earlier one of the same name in any case (a fixed "user-agent" replaces a forwarded
# "User-Agent"), as a case-insensitive mapping would, for a fraction of its cost.
_Built = dict[str, Header]


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    webhook_id: str
    body: bytes
    pairs: list[Header]
    """The headers as sent, each name once (in any case)."""
    deliveries: tuple[DueDelivery, ...]

    @property
    def headers(self) -> CIMultiDict[str]:
        """The headers as a case-insensitive mapping (a copy)."""
        return CIMultiDict(self.pairs)


def is_json(body: bytes) -> bool:
    """Can this body travel inside a batch envelope as it is?"""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


class RequestBuilder:
    """Builds one destination's requests; its signer and fixed headers are prepared once."""

    def __init__(self, destination: DestinationConfig, identity: str | None) -> None:
        # RFC 9110 Via: each hookgate a webhook passed through, so that one that comes
        # back to an ingress it already passed is refused instead of relayed forever.
        # None: no Via (a preview, which opens no database to name).
        self.via = None if identity is None else via_entry(identity)
        self.signer = Signer(destination.sign, destination.secret)
        self.forward = [
            (name, name.lower())
            for name in destination.forward_headers
            if name.lower() not in wire.OWN_HEADERS
        ]
        own = wire.OWN_HEADERS
        self.fixed: _Built = {
            k.lower(): (k, v) for k, v in destination.headers.items() if k.lower() not in own
        }

    def single(
        self, delivery: DueDelivery, timestamp: int, transformed: Transformed | None = None
    ) -> OutboundRequest:
        """The request for one delivery; ``transformed``: what its transform made of it."""
        inbound: dict[str, str] = orjson.loads(delivery.headers)
        headers: _Built = {"user-agent": ("User-Agent", USER_AGENT)}
        content_type = inbound.get("content-type")
        if content_type is not None:
            headers["content-type"] = ("Content-Type", content_type)
        for name, key in self.forward:
            value = inbound.get(key)
            if value is not None:
                headers[key] = (name, value)
        headers.update(self.fixed)
        body = delivery.body
        if transformed is not None:
            if transformed.body is not None:
                body = transformed.body
                headers["content-type"] = ("Content-Type", "application/json")
            headers.update((name.lower(), (name, value)) for name, value in transformed.headers)
        pairs = list(headers.values())
        pairs.append((wire.WEBHOOK_ID, delivery.message_id))
        pairs.append((wire.WEBHOOK_TIMESTAMP, str(timestamp)))
        pairs.append((wire.SOURCE, delivery.source))
        if delivery.event_type is not None:
            pairs.append((wire.EVENT_TYPE, delivery.event_type))
        pairs.append((wire.ATTEMPT, str(delivery.attempts + 1)))
        if self.via is not None:
            upstream = inbound.get(_VIA)
            pairs.append((wire.VIA, f"{upstream}, {self.via}" if upstream else self.via))
        pairs.extend(self.signer.headers(delivery.message_id, timestamp, body).items())
        return OutboundRequest(delivery.message_id, body, pairs, (delivery,))

    def batch(self, deliveries: Sequence[DueDelivery], timestamp: int) -> OutboundRequest:
        """One POST for several JSON deliveries, in the envelope of docs/interfaces.md."""
        batch_id = batch_id_of(deliveries)
        body = orjson.dumps(
            {
                "batch_id": batch_id,
                "events": [
                    {
                        "id": d.message_id,
                        "source": d.source,
                        "type": d.event_type,
                        "received_at": format_time(d.received_at),
                        "payload": orjson.Fragment(d.body),
                    }
                    for d in deliveries
                ],
            }
        )
        headers: _Built = {
            "user-agent": ("User-Agent", USER_AGENT),
            "content-type": ("Content-Type", "application/json"),
        }
        headers.update(self.fixed)
        pairs = list(headers.values())
        pairs.append((wire.WEBHOOK_ID, batch_id))
        pairs.append((wire.WEBHOOK_TIMESTAMP, str(timestamp)))
        sources = {d.source for d in deliveries}
        if len(sources) == 1:
            pairs.append((wire.SOURCE, sources.pop()))
        pairs.append((wire.ATTEMPT, str(max(d.attempts for d in deliveries) + 1)))
        pairs.append((wire.BATCH_SIZE, str(len(deliveries))))
        if self.via is not None:
            pairs.append((wire.VIA, self.via))
        pairs.extend(self.signer.headers(batch_id, timestamp, body).items())
        return OutboundRequest(batch_id, body, pairs, tuple(deliveries))


def preview(
    destination: DestinationConfig,
    message: TransformInput,
    transformed: Transformed | None,
    timestamp: int,
) -> OutboundRequest:
    """The request a first attempt of ``message`` would send (``hookgate transform``).

    Built as the worker builds it, but for Via, which names a database the CLI does
    not open: it is left out.
    """
    delivery = DueDelivery(
        id=0,
        message_id=message.message_id,
        destination=destination.name,
        attempts=0,
        next_attempt_at=timestamp,
        received_at=timestamp,
        source=message.source,
        event_type=message.event_type,
        headers=message.headers,
        body=message.body,
    )
    return RequestBuilder(destination, identity=None).single(delivery, timestamp, transformed)


def via_entry(identity: str) -> str:
    return f"1.1 {wire.via_name(identity)}"


def batch_id_of(deliveries: Sequence[DueDelivery]) -> str:
    """The same set of deliveries always gets the same id, so a retried batch keeps it."""
    members = sorted(d.id for d in deliveries)
    digest = hashlib.sha256(b",".join(str(i).encode() for i in members)).hexdigest()
    return f"batch_{digest[:24]}"


def group_into_requests(due: Sequence[DueDelivery], batch_max: int) -> list[list[DueDelivery]]:
    """Requests to send: JSON deliveries in batches of up to ``batch_max``, others alone."""
    if batch_max <= 1:
        return [[d] for d in due]
    groups: list[list[DueDelivery]] = []
    batch: list[DueDelivery] = []
    for delivery in due:
        if not is_json(delivery.body):
            if batch:  # close the open batch first: requests keep the claim's order
                groups.append(batch)
                batch = []
            groups.append([delivery])
            continue
        batch.append(delivery)
        if len(batch) == batch_max:
            groups.append(batch)
            batch = []
    if batch:
        groups.append(batch)
    return groups
