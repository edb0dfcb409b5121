"""A receiver for hookgate's deliveries, signed with sign = "standard".

Each request is verified with the official Standard Webhooks library
(`pip install standardwebhooks`), which also refuses timestamps more than five
minutes away from this machine's clock. `webhook-id` is the idempotency key:
hookgate delivers at least once, so the same id can arrive again (a retry after a
timeout, a replay); it is answered 200 without being processed twice.

    WEBHOOK_SECRET=whsec_... PORT=5000 python receiver.py

Prints one line per request on stdout:
    accepted id=msg_... type=order.created attempt=1
    duplicate id=msg_...
    rejected id=msg_... status=401 reason=...
    failed id=msg_... error=...          (process() raised: answered 500, retried)

Standard library only besides standardwebhooks: http.server is enough for an
example; in production put the same logic in your web framework's handler.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024  # hookgate's default server.max_body
# Ids remembered in memory, oldest forgotten first. A real service records the id
# in its database, in the same transaction as the work the webhook causes (a
# unique constraint on it), so a duplicate is refused even after a restart.
SEEN_MAX = 100_000


class SeenIds:
    """The webhook ids already processed, bounded, safe across handler threads."""

    def __init__(self, limit: int) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def claim(self, webhook_id: str) -> bool:
        """True the first time an id is seen: the caller processes it."""
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._limit:
                self._ids.popitem(last=False)
            return True

    def release(self, webhook_id: str) -> None:
        """Processing failed: forget the id so that hookgate's retry is processed."""
        with self._lock:
            self._ids.pop(webhook_id, None)


_print_lock = threading.Lock()


def log(line: str) -> None:
    """One whole line at a time: handler threads must not interleave their output."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    webhook: Webhook
    seen: SeenIds

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, {"error": "payload_too_large"})
            return
        body = self.rfile.read(length)
        webhook_id = self.headers.get("webhook-id", "-")
        try:
            # Verify the exact bytes received, before parsing anything.
            self.webhook.verify(body, dict(self.headers), json_parse=False)
        except (WebhookVerificationError, UnicodeDecodeError, ValueError) as exc:
            log(f"rejected id={webhook_id} status=401 reason={str(exc) or type(exc).__name__}")
            self.answer(401, {"error": "invalid_signature"})
            return
        if self.headers.get("Hookgate-Batch-Size"):
            # batch_max > 1: webhook-id names the batch and each event has its own
            # id; a retried batch may regroup events, so deduplicate per event.
            events = [
                (e["id"], e.get("type") or "-", json.dumps(e["payload"]).encode())
                for e in json.loads(body)["events"]
            ]
        else:
            events = [(webhook_id, self.headers.get("Hookgate-Event-Type", "-"), body)]
        for event_id, event_type, payload in events:
            if not self.receive(event_id, event_type, payload):
                self.answer(500, {"error": "processing_failed"})  # hookgate retries
                return
        self.answer(200, {"status": "ok"})

    def receive(self, event_id: str, event_type: str, payload: bytes) -> bool:
        """Process one event unless its id was seen; False when processing failed."""
        if not self.seen.claim(event_id):
            log(f"duplicate id={event_id}")
            return True
        try:
            process(event_id, event_type, payload)
        except Exception as exc:
            self.seen.release(event_id)
            log(f"failed id={event_id} error={exc!r}")
            return False
        attempt = self.headers.get("Hookgate-Attempt", "-")
        log(f"accepted id={event_id} type={event_type} attempt={attempt}")
        return True

    def answer(self, status: int, payload: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per webhook (above) is enough; no access log


def process(event_id: str, event_type: str, payload: bytes) -> None:
    """Your work goes here: it runs once per event id (raise to have it retried)."""


def main() -> int:
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        print("receiver: set WEBHOOK_SECRET to the destination's whsec_... secret", file=sys.stderr)
        return 2
    Handler.webhook = Webhook(secret)
    Handler.seen = SeenIds(SEEN_MAX)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    with ThreadingHTTPServer((host, port), Handler) as server:
        log(f"listening host={host} port={server.server_address[1]}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
