"""Who is signed in to the dashboard: sessions in memory, a cookie, a CSRF token each.

The admin token is typed once into the sign-in form; the browser then holds only a
random session id in an HttpOnly, SameSite=Strict cookie (never the token, never in
a URL or in storage a script can read). Each session has its own CSRF token, which
every form carries. A session ends at sign-out, after ``IDLE_TIMEOUT`` without a
request, when the token changes (a reload), or when the daemon restarts.

Sign-in is throttled per peer address (``SigninThrottle``): after
``SIGNIN_FAILURES`` wrong tokens within ``SIGNIN_WINDOW`` seconds, that address gets
429 until the oldest of them is older than the window, whatever it sends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

COOKIE = "hookgate_session"
IDLE_TIMEOUT = 12 * 3600.0
# Sessions beyond this many push out the least recently used: signing in again and
# again cannot grow memory without bound.
MAX_SESSIONS = 256
SIGNIN_FAILURES = 10
SIGNIN_WINDOW = 60.0
# Addresses tracked at once: a scan from many addresses cannot grow memory without bound.
MAX_THROTTLED_PEERS = 4096


@dataclass
class Session:
    id: str
    csrf: str
    token_digest: bytes
    last_seen: float
    # The result of the last action, shown once on the next page.
    flash: str | None = None
    flash_failed: bool = False
    label: str = field(init=False)

    def __post_init__(self) -> None:
        # Who did it, in the log: names the session without giving away its id.
        self.label = "session:" + hashlib.sha256(self.id.encode()).hexdigest()[:12]

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    def take_flash(self) -> tuple[str, bool] | None:
        """The last action's result, once."""
        if self.flash is None:
            return None
        shown = (self.flash, self.flash_failed)
        self.flash = None
        return shown


class Sessions:
    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def start(self, token_digest: bytes) -> Session:
        """A new session for someone who just gave the right token."""
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            token_digest=token_digest,
            last_seen=time.monotonic(),
        )
        self._by_id[session.id] = session
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def find(self, session_id: str | None, token_digest: bytes | None) -> Session | None:
        """The live session with this id, made with the current token; None otherwise."""
        if not session_id or token_digest is None:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        stale = now - session.last_seen > IDLE_TIMEOUT
        if stale or not hmac.compare_digest(session.token_digest, token_digest):
            del self._by_id[session_id]
            return None
        session.last_seen = now
        self._by_id.move_to_end(session_id)
        return session

    def end(self, session: Session) -> None:
        self._by_id.pop(session.id, None)


class SigninThrottle:
    """Wrong tokens per peer address in the last ``SIGNIN_WINDOW`` seconds."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, peer: str, now: float) -> float:
        """Seconds until ``peer`` may try again; 0 when it may now."""
        failures = self._failures.get(peer)
        if failures is None:
            return 0.0
        while failures and now - failures[0] >= SIGNIN_WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[peer]
            return 0.0
        if len(failures) < SIGNIN_FAILURES:
            return 0.0
        return SIGNIN_WINDOW - (now - failures[0])

    def failed(self, peer: str, now: float) -> None:
        failures = self._failures.setdefault(peer, deque(maxlen=SIGNIN_FAILURES))
        failures.append(now)
        self._failures.move_to_end(peer)
        while len(self._failures) > MAX_THROTTLED_PEERS:
            self._failures.popitem(last=False)

    def succeeded(self, peer: str) -> None:
        self._failures.pop(peer, None)
