"""The dashboard's routes: sign-in, pages, the overview's live figures and actions.

Every page and action needs a session (``sessions``); every POST needs the
session's CSRF token; every answer carries a strict Content-Security-Policy (only
this listener's own script and style, no inline script). An action runs the
admin API's own call (``AdminApi.retry``, ``replay``, ``retry_dead``,
``set_paused``), after a confirmation page, and is logged with the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from hookgate.admin import params
from hookgate.admin.api import AdminApi
from hookgate.admin.dashboard import overview, pages
from hookgate.admin.dashboard.history import History
from hookgate.admin.dashboard.html import Markup
from hookgate.admin.dashboard.sessions import COOKIE, Session, Sessions, SigninThrottle
from hookgate.admin.routes import Problem
from hookgate.errors import StoreError

log = structlog.get_logger("hookgate.dashboard")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_STORE_DOWN = "the store cannot answer now (the log says why)."
_STATIC = resources.files("hookgate.admin.dashboard") / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}

_Answer = TypeVar("_Answer", bound=web.StreamResponse)
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self.sessions = Sessions()
        self.throttle = SigninThrottle()
        self.history = History()

    @property
    def _token_digest(self) -> bytes | None:
        token = self.api.config.admin.token
        return None if token is None else _digest(token)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self._page(self.overview)),
            web.get("/signin", self.signin_form),
            web.post("/signin", self.signin),
            web.post("/signout", self._action(self.signout)),
            web.get("/messages", self._page(self.messages)),
            web.get("/messages/{id}", self._page(self.message)),
            web.get("/live/overview", self._page(self.live, refuse=True)),
            web.get("/static/{name}", self.static),
            web.post("/deliveries/{id}/retry", self._action(self.retry)),
            web.post("/messages/{id}/replay", self._action(self.replay)),
            web.post("/destinations/{name}/retry", self._action(self.retry_dead)),
            web.post("/destinations/{name}/pause", self._action(self.pause)),
            web.post("/destinations/{name}/resume", self._action(self.resume)),
        ]

    async def sample_history(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the history's sampling task, while the app runs."""
        task = asyncio.create_task(self.history.run(), name="dashboard-history")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- the gate ------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.find(request.cookies.get(COOKIE), self._token_digest)

    def _page(
        self, handler: Handler, refuse: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                if refuse:
                    return _secured(web.json_response({"error": "unauthorized"}, status=401))
                return _secured(_redirect("/signin"))
            try:
                return _secured(await handler(request, session))
            except StoreError as exc:
                log.error("dashboard.store_failed", path=request.path, error=str(exc))
                return _html(pages.problem("Unavailable", _STORE_DOWN, session), 503)

        return page

    def _action(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def action(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                return _html(pages.problem("Signed out", "Sign in first.", None), 401)
            form = await request.post()
            csrf = form.get("csrf")
            if not session.csrf_matches(csrf if isinstance(csrf, str) else None):
                log.warning("dashboard.csrf_refused", path=request.path, actor=session.label)
                refusal = pages.problem("Refused", "Missing or wrong form token.", session)
                return _html(refusal, 403)
            return _secured(await handler(request, session))

        return action

    # -- sign-in ----------------------------------------------------------------------------

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            return _secured(_redirect("/"))
        return _html(pages.signin(None, self._token_digest is not None))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        expected = self._token_digest
        if expected is None:
            return _html(pages.signin(None, False), 403)
        peer = request.remote or ""
        now = time.monotonic()
        wait = self.throttle.wait(peer, now)
        if wait > 0:
            log.warning("dashboard.signin_throttled", peer=request.remote)
            refusal = pages.signin("Too many wrong tokens; try again in a minute.", True)
            answer = _html(refusal, 429)
            answer.headers["Retry-After"] = str(math.ceil(wait))
            return answer
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(_digest(given), expected):
            self.throttle.failed(peer, now)
            log.warning("dashboard.signin_failed", peer=request.remote)
            return _html(pages.signin("That is not the admin token.", True), 401)
        self.throttle.succeeded(peer)
        session = self.sessions.start(expected)
        log.info("dashboard.signed_in", actor=session.label, peer=request.remote)
        answer = _redirect("/")
        answer.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        return _secured(answer)

    async def signout(self, request: web.Request, session: Session) -> web.StreamResponse:
        self.sessions.end(session)
        log.info("dashboard.signed_out", actor=session.label)
        answer = _redirect("/signin")
        answer.del_cookie(COOKIE, path="/")
        return answer

    # -- pages --------------------------------------------------------------------------------

    async def overview(self, request: web.Request, session: Session) -> web.StreamResponse:
        view = await overview.gather(self.api, self.history)
        return _html(pages.overview(view, session))

    async def live(self, request: web.Request, session: Session) -> web.StreamResponse:
        view = await overview.gather(self.api, self.history)
        return web.Response(body=msgspec.json.encode(view.live), content_type="application/json")

    async def messages(self, request: web.Request, session: Session) -> web.StreamResponse:
        query = request.query
        page, error = None, None
        try:
            page = await self.api.messages(params.message_filter(query), params.DEFAULT_LIMIT)
        except Problem as exc:
            error = exc.detail
        config = self.api.config
        body = pages.messages(
            page, query, sorted(config.sources), sorted(config.destinations), error, session
        )
        return _html(body, 200 if error is None else 400)

    async def message(self, request: web.Request, session: Session) -> web.StreamResponse:
        try:
            detail = await self.api.message_detail(request.match_info["id"])
        except Problem as exc:
            return _html(pages.problem("Not found", exc.detail, session), exc.status)
        admin = self.api.config.admin
        body = pages.message(
            detail,
            admin.show_bodies,
            admin.body_preview,
            sorted(self.api.config.destinations),
            session,
        )
        return _html(body)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = _STATIC_TYPES.get(name[name.rfind(".") :]) if "." in name else None
        entry = _STATIC / name
        if kind is None or "/" in name or not entry.is_file():
            raise web.HTTPNotFound()
        answer = web.Response(body=entry.read_bytes(), content_type=kind)
        answer.headers.update(_SECURITY_HEADERS)
        answer.headers["Cache-Control"] = "max-age=300"
        return answer

    # -- actions: the API's own calls, after a confirmation ----------------------------------------

    async def retry(self, request: web.Request, session: Session) -> web.StreamResponse:
        delivery_id = request.match_info["id"]
        return await self._confirmed(
            request,
            session,
            f"Retry delivery {delivery_id} now?",
            lambda: self._retry(delivery_id, session),
        )

    async def _retry(self, delivery_id: str, session: Session) -> str:
        if not params.is_whole_number(delivery_id):
            raise Problem(404, "not_found", "no such delivery")
        row = await self.api.retry(int(delivery_id), actor=session.label)
        return f"Delivery {row.id} to {row.destination} is due now."

    async def replay(self, request: web.Request, session: Session) -> web.StreamResponse:
        form = await request.post()
        name = _field(form, "destination")
        message_id = request.match_info["id"]
        where = f"destination {name}" if name else "every destination it matches"
        return await self._confirmed(
            request,
            session,
            f"Replay message {message_id} to {where}?",
            lambda: self._replay(message_id, name, session),
        )

    async def _replay(self, message_id: str, name: str | None, session: Session) -> str:
        result = await self.api.replay(message_id, name, actor=session.label)
        targets = ", ".join(d.destination for d in result.deliveries) or "no destination"
        return f"Replayed {message_id}: {len(result.deliveries)} new delivery(ies) to {targets}."

    async def retry_dead(self, request: web.Request, session: Session) -> web.StreamResponse:
        name = request.match_info["name"]
        form = await request.post()
        since = _field(form, "since")
        when = f" that died since {since} UTC" if since else ""
        return await self._confirmed(
            request,
            session,
            f"Retry every dead delivery of {name}{when}?",
            lambda: self._retry_dead(name, since, session),
        )

    async def _retry_dead(self, name: str, since_text: str | None, session: Session) -> str:
        since = params.moment({"since": since_text} if since_text else {}, params.SINCE)
        result = await self.api.retry_dead(name, since, actor=session.label)
        return f"{result.retried} dead delivery(ies) of {name} are due again."

    async def pause(self, request: web.Request, session: Session) -> web.StreamResponse:
        return await self._set_paused(request, session, True)

    async def resume(self, request: web.Request, session: Session) -> web.StreamResponse:
        return await self._set_paused(request, session, False)

    async def _set_paused(
        self, request: web.Request, session: Session, paused: bool
    ) -> web.StreamResponse:
        name = request.match_info["name"]
        verb = "Pause" if paused else "Resume"

        async def run() -> str:
            destination = await self.api.set_paused(name, paused, actor=session.label)
            return f"{destination.name} is {destination.state} ({destination.pending} pending)."

        return await self._confirmed(request, session, f"{verb} destination {name}?", run)

    async def _confirmed(
        self,
        request: web.Request,
        session: Session,
        question: str,
        run: Callable[[], Awaitable[str]],
    ) -> web.StreamResponse:
        """The confirmation page, or, once confirmed, the action and its result."""
        form = await request.post()
        fields = {
            k: v for k, v in form.items() if isinstance(v, str) and k not in ("csrf", "confirmed")
        }
        fields["back"] = _local(fields.get("back"))
        if form.get("confirmed") != "yes":
            return _html(pages.confirm(question, request.path, fields, session))
        try:
            session.flash, session.flash_failed = await run(), False
        except Problem as exc:
            session.flash, session.flash_failed = f"Not done: {exc.detail}.", True
        except StoreError as exc:
            log.error("dashboard.store_failed", path=request.path, error=str(exc))
            session.flash, session.flash_failed = f"Not done: {_STORE_DOWN}", True
        return _redirect(fields["back"])


def _field(form: Mapping[str, object], name: str) -> str | None:
    """A form field's text; None when absent or empty."""
    value = form.get(name)
    return value if isinstance(value, str) and value else None


def _local(path: str | None) -> str:
    """Where to go back after an action: a path on this listener, never elsewhere."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _html(body: Markup, status: int = 200) -> web.Response:
    return _secured(web.Response(text=body, status=status, content_type="text/html"))


def _secured(answer: _Answer) -> _Answer:
    answer.headers.update(_SECURITY_HEADERS)
    return answer
