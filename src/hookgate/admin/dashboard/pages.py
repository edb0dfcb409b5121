"""The dashboard's pages, rendered from the API's answers (``hookgate.admin.answers``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlencode

from hookgate.admin import answers
from hookgate.admin.dashboard.html import Markup, join, tag
from hookgate.admin.dashboard.overview import Overview, source_label
from hookgate.admin.dashboard.sessions import Session
from hookgate.wire import DELIVERY_STATES

# Header names whose values are credentials or signatures: shown masked.
_SECRET_HEADER = re.compile(
    r"authorization|cookie|signature|secret|token|password|api[-_]?key|hmac|x-hub|webhook-sig",
    re.IGNORECASE,
)
MASK = "••••••"
DEAD_REASONS = {
    "gone": "the destination answered 410 Gone",
    "max_attempts": "every allowed attempt failed (max_attempts)",
    "max_age": "the message grew older than max_age",
    "transform": "its transform failed (the attempt's error says how)",
}
SKIP_REASONS = {
    "event_type": "its events leave out this event type",
    "filter": "its content filter did not match",
}


def layout(title: str, body: Markup, session: Session | None, live: bool = False) -> Markup:
    """A whole page: head, navigation (when signed in), the last action's result, body."""
    header = None
    if session is not None:
        header = tag(
            "header",
            {},
            tag("a", {"class": "brand", "href": "/"}, "hookgate"),
            tag(
                "nav",
                {"aria-label": "Main"},
                tag("a", {"href": "/"}, "Overview"),
                tag("a", {"href": "/messages"}, "Messages"),
            ),
            post_form(session, "/signout", "Sign out", {}, css="signout"),
        )
    flash = session.take_flash() if session is not None else None
    notice = None
    if flash is not None:
        text, failed = flash
        css = "flash failed" if failed else "flash"
        notice = tag("p", {"class": css, "role": "status", "id": "result"}, text)
    document = tag(
        "html",
        {"lang": "en"},
        tag(
            "head",
            {},
            tag("meta", {"charset": "utf-8"}),
            tag("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
            tag("title", {}, f"{title} · hookgate"),
            tag("link", {"rel": "stylesheet", "href": "/static/app.css"}),
            tag("script", {"src": "/static/app.js", "defer": True}),
        ),
        tag(
            "body",
            {"data-live": "/live/overview" if live else None},
            tag("a", {"class": "skip", "href": "#main"}, "Skip to content"),
            header,
            tag("main", {"id": "main"}, tag("h1", {}, title), notice, body),
        ),
    )
    return Markup("<!doctype html>\n" + document)


def problem(title: str, text: str, session: Session | None) -> Markup:
    """A page that only says what went wrong."""
    return layout(title, tag("p", {"class": "flash failed", "role": "alert"}, text), session)


def post_form(
    session: Session,
    action: str,
    label: str,
    fields: Mapping[str, str],
    *,
    css: str = "action",
    extra: Markup | None = None,
    focused: bool = False,
) -> Markup:
    """A form that POSTs ``fields`` with the session's CSRF token."""
    hidden = [tag("input", {"type": "hidden", "name": k, "value": v}) for k, v in fields.items()]
    return tag(
        "form",
        {"method": "post", "action": action, "class": css},
        tag("input", {"type": "hidden", "name": "csrf", "value": session.csrf}),
        hidden,
        extra,
        tag("button", {"type": "submit", "autofocus": focused}, label),
    )


# -- sign-in ---------------------------------------------------------------------------


def signin(error: str | None, enabled: bool) -> Markup:
    if not enabled:
        note = "Set a token in [admin] (token or token_file) to use the dashboard."
        return layout("Sign in", tag("p", {"class": "flash failed"}, note), None)
    form = tag(
        "form",
        {"method": "post", "action": "/signin", "class": "signin"},
        tag("label", {"for": "token"}, "Admin token"),
        tag(
            "input",
            {
                "id": "token",
                "name": "token",
                "type": "password",
                "autocomplete": "current-password",
                "required": True,
                "autofocus": True,
            },
        ),
        tag("button", {"type": "submit"}, "Sign in"),
    )
    failed = None if error is None else tag("p", {"class": "flash failed", "role": "alert"}, error)
    return layout("Sign in", join([failed, form]), None)


# -- overview ----------------------------------------------------------------------------


def overview(view: Overview, session: Session) -> Markup:
    values = view.live.values
    sources = _table(
        "sources",
        ("Source", "In, 1 h", "In, 24 h", "Rejected, 1 h", "Rejected, 24 h"),
        (
            [
                source_label(s),
                *(
                    _live(values, f"src:{s}:{k}")
                    for k in ("in_hour", "in_day", "rejected_hour", "rejected_day")
                ),
            ]
            for s in view.sources
        ),
    )
    destinations = _table(
        "destinations",
        (
            "Destination",
            "State",
            "Pending",
            "Dead",
            "Oldest pending",
            "Success, 1 h",
            "p50",
            "p99",
            "Actions",
        ),
        (
            [
                tag("a", {"href": "/messages?" + urlencode({"destination": d.name})}, d.name),
                *(
                    _live(values, f"dst:{d.name}:{k}")
                    for k in ("state", "pending", "dead", "oldest", "success", "p50", "p99")
                ),
                _destination_actions(d, session),
            ]
            for d in view.destinations
        ),
    )
    charts = tag(
        "section",
        {"class": "charts", "aria-label": "Charts over the last hour"},
        _chart("received", "Webhooks in, per 10 s"),
        _chart("failures", "Failed attempts, per 10 s"),
        _chart("p50_ms", "Attempt time p50, ms"),
    )
    return layout(
        "Overview",
        join(
            [
                charts,
                tag("h2", {}, "Sources"),
                sources,
                tag("h2", {}, "Destinations"),
                destinations,
                tag("h2", {}, "Latest messages"),
                message_table(view.live.latest, "latest"),
                tag("p", {"class": "note", "id": "live-status"}, "Live: refreshed every 2 s."),
            ]
        ),
        session,
        live=True,
    )


def _live(values: Mapping[str, str], key: str) -> Markup:
    return tag("span", {"data-key": key}, values.get(key, "-"))


def _chart(series: str, title: str) -> Markup:
    return tag(
        "figure",
        {"class": "chart"},
        tag("figcaption", {}, title, " ", tag("span", {"class": "last", "data-last": series})),
        tag(
            "svg",
            {
                "data-series": series,
                "viewBox": "0 0 300 80",
                "preserveAspectRatio": "none",
                "role": "img",
                "aria-label": title,
            },
            tag("g", {"class": "bars"}),
        ),
    )


def _destination_actions(destination: answers.Destination, session: Session) -> Markup:
    base = f"/destinations/{destination.name}"
    back = {"back": "/"}
    if not destination.configured:
        return Markup("")
    toggle = (
        post_form(session, base + "/resume", "Resume", back)
        if destination.paused
        else post_form(session, base + "/pause", "Pause", back)
    )
    since = tag(
        "label",
        {},
        "dead since (UTC) ",
        tag("input", {"type": "datetime-local", "name": "since", "step": "1"}),
    )
    retry = post_form(session, base + "/retry", "Retry dead", back, extra=since)
    return join([toggle, retry])


# -- messages ------------------------------------------------------------------------------


def messages(
    page: answers.MessagePage | None,
    query: Mapping[str, str],
    sources: Sequence[str],
    destinations: Sequence[str],
    error: str | None,
    session: Session,
) -> Markup:
    form = tag(
        "form",
        {"method": "get", "action": "/messages", "class": "filters"},
        _select("source", "Source", sources, query),
        _text("event_type", "Event type", query),
        _text("event_id", "Event id", query),
        _select("destination", "Destination", destinations, query),
        _select("state", "Delivery state", DELIVERY_STATES, query),
        _text("since", "From (UTC)", query, "datetime-local"),
        _text("until", "Until (UTC)", query, "datetime-local"),
        tag("button", {"type": "submit"}, "Filter"),
        tag("a", {"href": "/messages"}, "Clear"),
    )
    parts: list[Markup | None] = [form]
    if error is not None:
        parts.append(tag("p", {"class": "flash failed", "role": "alert"}, error))
    if page is not None:
        parts.append(message_table(page.items, "messages"))
        if page.next_cursor is not None:
            older = {k: v for k, v in query.items() if k != "cursor" and v}
            older["cursor"] = page.next_cursor
            parts.append(
                tag("a", {"class": "more", "href": "/messages?" + urlencode(older)}, "Older →")
            )
    return layout("Messages", join(parts), session)


def message_table(items: Iterable[answers.Message], table_id: str) -> Markup:
    return _table(
        table_id,
        ("Received (UTC)", "Source", "Event type", "Event id", "Deliveries"),
        (
            [
                tag("a", {"href": f"/messages/{m.id}"}, m.received_at),
                m.source,
                m.event_type or "-",
                m.event_id or "-",
                deliveries_summary(m.deliveries),
            ]
            for m in items
        ),
    )


def deliveries_summary(counts: answers.DeliveryCounts) -> str:
    return f"{counts.delivered} delivered, {counts.pending} pending, {counts.dead} dead"


def _text(name: str, label: str, query: Mapping[str, str], kind: str = "text") -> Markup:
    return tag(
        "label",
        {},
        label,
        tag(
            "input",
            {
                "type": kind,
                "name": name,
                "value": query.get(name, ""),
                "step": "1" if kind == "datetime-local" else None,
            },
        ),
    )


def _select(name: str, label: str, options: Iterable[str], query: Mapping[str, str]) -> Markup:
    chosen = query.get(name, "")
    return tag(
        "label",
        {},
        label,
        tag(
            "select",
            {"name": name},
            tag("option", {"value": ""}, "any"),
            (tag("option", {"value": o, "selected": o == chosen}, o) for o in options),
        ),
    )


# -- one message -------------------------------------------------------------------------


def message(
    detail: answers.MessageDetail,
    show_bodies: bool,
    body_preview: int,
    destinations: Sequence[str],
    session: Session,
) -> Markup:
    back = {"back": f"/messages/{detail.id}"}
    facts = tag(
        "dl",
        {"class": "facts"},
        (
            join([tag("dt", {}, k), tag("dd", {}, v)])
            for k, v in (
                ("Id", detail.id),
                ("Source", detail.source),
                ("Event type", detail.event_type or "-"),
                ("Event id", detail.event_id or "-"),
                ("Received (UTC)", detail.received_at),
                ("Size", f"{detail.size} bytes"),
            )
        ),
    )
    replay = tag(
        "div",
        {"class": "actions"},
        post_form(session, f"/messages/{detail.id}/replay", "Replay to all destinations", back),
        post_form(
            session,
            f"/messages/{detail.id}/replay",
            "Replay to",
            back,
            extra=_choose_destination(destinations),
        ),
    )
    headers = _table(
        "headers",
        ("Header", "Value"),
        ([name, masked(name, value)] for name, value in sorted(detail.headers.items())),
    )
    parts = [
        facts,
        replay,
        tag("h2", {}, "Headers"),
        headers,
        tag("h2", {}, "Body"),
        body(detail, show_bodies, body_preview),
        tag("h2", {}, "Deliveries"),
        (_delivery(d, session, back) for d in detail.deliveries),
    ]
    if not detail.deliveries:
        parts.append(tag("p", {}, "No destination matched this message."))
    if detail.skipped:
        parts += [tag("h2", {}, "Skipped destinations"), _skipped(detail.skipped)]
    return layout(f"Message {detail.id}", join(parts), session)


def _skipped(skipped: Sequence[answers.SkippedDestination]) -> Markup:
    """The destinations of the message's source that got no delivery, and why."""
    return _table(
        "skipped",
        ("Destination", "Why"),
        ([s.destination, SKIP_REASONS.get(s.reason, s.reason)] for s in skipped),
    )


def _choose_destination(destinations: Sequence[str]) -> Markup:
    return tag(
        "select",
        {"name": "destination", "aria-label": "Destination", "required": True},
        (tag("option", {"value": d}, d) for d in destinations),
    )


def masked(name: str, value: str) -> str:
    """A header's value as shown: credentials and signatures masked."""
    return MASK if _SECRET_HEADER.search(name) else value


def body(detail: answers.MessageDetail, show_bodies: bool, body_preview: int) -> Markup:
    if not show_bodies:
        return tag("p", {"class": "note"}, "Bodies are hidden (admin.show_bodies = false).")
    if detail.body is None:
        return tag("p", {"class": "note"}, f"A binary body of {detail.size} bytes (not shown).")
    text = detail.body
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    cut = None
    if len(text) > body_preview:
        cut = tag("p", {"class": "note"}, f"Cut at {body_preview} of {len(text)} characters.")
        text = text[:body_preview]
    return join([tag("pre", {"class": "body", "tabindex": "0"}, text), cut])


def _delivery(delivery: answers.DeliveryDetail, session: Session, back: dict[str, str]) -> Markup:
    reason = None
    if delivery.state == "dead":
        why = DEAD_REASONS.get(delivery.dead_reason or "", delivery.dead_reason or "unknown")
        reason = tag("p", {"class": "dead"}, f"Dead: {why}.")
    retry = None
    if delivery.state != "delivered":
        retry = post_form(session, f"/deliveries/{delivery.id}/retry", "Retry now", back)
    attempts = _table(
        f"attempts-{delivery.id}",
        ("Started (UTC)", "Status", "Duration", "Error", "Response"),
        (
            [
                a.started_at,
                "-" if a.status is None else str(a.status),
                f"{a.duration_ms:.1f} ms",
                a.error or "-",
                tag("code", {}, a.response_snippet[:200]),
            ]
            for a in delivery.attempt_log
        ),
        css="attempts",
    )
    return tag(
        "section",
        {"class": "delivery", "id": f"delivery-{delivery.id}"},
        tag(
            "h3",
            {},
            f"{delivery.destination}: ",
            tag("span", {"class": f"state {delivery.state}"}, delivery.state),
            f" · {delivery.attempts} attempt(s) · delivery {delivery.id}",
        ),
        reason,
        retry,
        attempts,
    )


# -- confirmation -------------------------------------------------------------------------------


def confirm(question: str, action: str, fields: Mapping[str, str], session: Session) -> Markup:
    back = fields.get("back", "/")
    # Focused: Enter confirms, Tab then Enter cancels.
    confirmed = {**fields, "confirmed": "yes"}
    form = post_form(session, action, "Confirm", confirmed, css="confirm", focused=True)
    cancel = tag("a", {"href": back, "class": "cancel"}, "Cancel")
    return layout("Confirm", join([tag("p", {}, question), form, cancel]), session)


def _table(
    table_id: str,
    headings: Sequence[str],
    rows: Iterable[Sequence[object]],
    css: str | None = None,
) -> Markup:
    body = [
        tag("tr", {}, (tag("td", {"data-label": h}, c) for h, c in zip(headings, row, strict=True)))
        for row in rows
    ]
    return tag(
        "div",
        {"class": "table"},
        tag(
            "table",
            {"id": table_id, "class": css},
            tag("thead", {}, tag("tr", {}, (tag("th", {"scope": "col"}, h) for h in headings))),
            tag("tbody", {}, body),
        ),
    )
