"""End to end: the admin subcommands against the real daemon's admin API.

Each command runs as ``python -m hookgate ...`` (``run_cli``, in a thread so the
downstream servers in this event loop keep answering) and its output and exit code
are compared with what the API itself answers for the same question.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from .conftest import Daemon, Downstream, Reply, free_port, post, run_cli, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MakeDownstream = Callable[..., Awaitable[Downstream]]
TOKEN = "admin-" + secrets.token_hex(12)


class Admin:
    """One daemon seen two ways: through the API directly and through the CLI."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.session = session

    async def api(
        self, method: str, path: str, token: str = TOKEN, **params: str
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        url = self.daemon.admin_url("/api/v1" + path)
        async with self.session.request(method, url, headers=headers, params=params) as answer:
            return answer.status, await answer.json()

    async def get(self, path: str, **params: str) -> Any:
        status, body = await self.api("GET", path, **params)
        assert status == 200, body
        return body

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> CliRun:
        result = await asyncio.to_thread(
            run_cli, *args, "-c", str(self.daemon.config_path), env=env
        )
        assert "Traceback" not in result.stderr, result.stderr
        return CliRun(result.returncode, result.stdout, result.stderr)

    async def cli_json(self, *args: str) -> Any:
        run = await self.cli(*args, "--json")
        assert run.code == 0, run
        return json.loads(run.out)

    async def settled(self) -> None:
        """Wait until no delivery is pending."""
        await wait_for(
            lambda: (
                self.daemon.query("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0]
                == 0
            ),
            message="deliveries still pending",
        )


class CliRun:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def __repr__(self) -> str:
        return f"CliRun(code={self.code}, out={self.out!r}, err={self.err!r})"

    def rows(self) -> list[list[str]]:
        return [line.split() for line in self.out.splitlines() if line.strip()]


@pytest.fixture
async def gone(downstream_factory: MakeDownstream) -> Downstream:
    """A destination that answers 410 Gone: each delivery to it is dead at once."""
    server = await downstream_factory()
    server.default = Reply(status=410, body=b"gone for good")
    return server


@pytest.fixture
async def admin(
    start_daemon: StartDaemon,
    downstream: Downstream,
    gone: Downstream,
    client: aiohttp.ClientSession,
) -> Admin:
    daemon = await start_daemon(
        admin={"token": TOKEN},
        sources={"shop": {"path": "/hooks/shop", "event_type": "json:type", "event_id": "json:id"}},
        destinations={
            "orders": {"url": downstream.url("/orders"), "sources": ["shop"]},
            "crm": {"url": gone.url("/crm"), "sources": ["shop"], "events": ["order.*"]},
        },
    )
    return Admin(daemon, client)


async def accept(admin: Admin, client: aiohttp.ClientSession, payload: dict[str, Any]) -> str:
    """Post ``payload`` (with a fresh event id unless it has one); return the message id."""
    payload = {"id": f"evt_{uuid.uuid4().hex}", **payload}
    status, answer = await post(
        client, admin.daemon.url("/hooks/shop"), json.dumps(payload).encode()
    )
    assert status == 202, answer
    return str(answer["id"])


def delivery_of(detail: dict[str, Any], destination: str) -> dict[str, Any]:
    (found,) = [d for d in detail["deliveries"] if d["destination"] == destination]
    return found


# -- status ---------------------------------------------------------------------------


async def test_status(admin: Admin, client: aiohttp.ClientSession) -> None:
    await accept(admin, client, {"type": "order.created"})
    await admin.settled()
    run = await admin.cli("status")
    assert run.code == 0, run
    stats = await admin.get("/stats")
    lines = run.out.splitlines()
    assert lines[0] == f"hookgate at http://127.0.0.1:{admin.daemon.admin_port}: ready"
    assert f"messages: {stats['messages']}" in lines
    counts = stats["deliveries"]
    assert (
        f"deliveries: {counts['pending']} pending, {counts['delivered']} delivered,"
        f" {counts['dead']} dead"
    ) in lines
    (crm,) = [row for row in run.rows() if row[0] == "crm"]
    assert crm[1] in {"ok", "backing_off"}  # a 410 just now may or may not count against it
    assert crm[2:] == ["0", "1"]
    assert ["orders", "ok", "0", "0"] in run.rows()

    both = await admin.cli_json("status")
    assert both["readyz"] == await admin.daemon.readyz()
    assert {k: v for k, v in both["stats"].items() if k != "oldest_pending_age_s"} == {
        k: v for k, v in stats.items() if k != "oldest_pending_age_s"
    }


# -- messages -------------------------------------------------------------------------


async def test_messages_list_and_show(admin: Admin, client: aiohttp.ClientSession) -> None:
    ids = [await accept(admin, client, {"type": f"order.{n}", "id": f"evt_{n}"}) for n in range(3)]
    note = await accept(admin, client, {"type": "note.added", "id": "evt_note"})
    await admin.settled()

    listed = await admin.cli("messages", "list")
    assert listed.code == 0, listed
    api_page = await admin.get("/messages")
    assert [row[0] for row in listed.rows()[1:]] == [m["id"] for m in api_page["items"]]
    assert [row[0] for row in listed.rows()[1:]] == [note, *reversed(ids)]
    assert await admin.cli_json("messages", "list") == api_page

    dead = await admin.cli_json("messages", "list", "--state", "dead")
    assert dead == await admin.get("/messages", state="dead")
    assert {m["id"] for m in dead["items"]} == set(ids)  # "crm" takes order.* only
    by_type = await admin.cli_json("messages", "list", "--event-type", "note.added")
    assert [m["id"] for m in by_type["items"]] == [note]
    by_event = await admin.cli_json("messages", "list", "--event-id", "evt_1")
    assert [m["id"] for m in by_event["items"]] == [ids[1]]
    to_crm = await admin.cli_json("messages", "list", "--destination", "crm")
    assert to_crm == await admin.get("/messages", destination="crm")
    assert [m["id"] for m in to_crm["items"]] == list(reversed(ids))

    first = await admin.cli("messages", "list", "--limit", "2")
    assert first.out.splitlines()[-1] == f"more: --cursor {ids[2]}"
    rest = await admin.cli("messages", "list", "--limit", "2", "--cursor", ids[2])
    assert [row[0] for row in rest.rows()[1:3]] == [ids[1], ids[0]]
    # A full page always has a cursor (the API cannot know it was the last one).
    assert rest.out.splitlines()[-1] == f"more: --cursor {ids[0]}"
    empty = await admin.cli("messages", "list", "--limit", "2", "--cursor", ids[0])
    assert (empty.code, empty.out) == (0, "no messages\n")

    shown = await admin.cli("messages", "show", ids[0])
    assert shown.code == 0, shown
    detail = await admin.get(f"/messages/{ids[0]}")
    assert f"id:         {ids[0]}" in shown.out
    assert f"body:\n{detail['body']}" in shown.out
    for destination, state, result in (("orders", "delivered", "200"), ("crm", "dead", "410")):
        row = delivery_of(detail, destination)
        assert row["state"] == state
        assert [str(row["id"]), ids[0], destination, state, "1", "-", result] in shown.rows()
        assert f"attempts of delivery {row['id']} ({destination}):" in shown.out
    assert "gone for good" in shown.out
    assert await admin.cli_json("messages", "show", ids[0]) == detail


# -- pause and resume -----------------------------------------------------------------


async def test_pause_and_resume(
    admin: Admin, client: aiohttp.ClientSession, downstream: Downstream
) -> None:
    paused = await admin.cli("pause", "orders")
    assert paused.code == 0, paused
    assert paused.out.startswith("orders: paused, state paused (")
    destinations = (await admin.get("/destinations"))["items"]
    assert [d["paused"] for d in destinations if d["name"] == "orders"] == [True]

    message_id = await accept(admin, client, {"type": "order.created"})
    await wait_for(lambda: admin.daemon.delivery_rows(message_id))
    ready = await admin.daemon.readyz()
    assert ready["destinations"]["orders"] == {"state": "paused", "pending": 1}
    status = await admin.cli("status")
    assert ["orders", "paused", "1", "0"] in status.rows()

    resumed = await admin.cli("resume", "orders")
    assert resumed.code == 0, resumed
    assert resumed.out.startswith("orders: resumed, state ok (")
    await downstream.wait_count(1)
    assert downstream.requests[0].webhook_id == message_id
    destinations = (await admin.get("/destinations"))["items"]
    assert [d["paused"] for d in destinations if d["name"] == "orders"] == [False]


# -- retry and replay -----------------------------------------------------------------


async def test_retry_one_delivery_then_all_dead(
    admin: Admin, client: aiohttp.ClientSession, gone: Downstream
) -> None:
    ids = [await accept(admin, client, {"type": "order.created", "n": n}) for n in range(3)]
    await admin.settled()
    gone.default = Reply(status=200)
    first = delivery_of(await admin.get(f"/messages/{ids[0]}"), "crm")

    retried = await admin.cli("retry", str(first["id"]))
    assert retried.code == 0, retried
    assert retried.out.splitlines()[0] == f"retried delivery {first['id']}:"
    assert retried.rows()[2][:5] == [str(first["id"]), ids[0], "crm", "pending", "0"]
    await gone.wait_count(4)  # three dead attempts, then the retried one
    await admin.settled()
    assert delivery_of(await admin.get(f"/messages/{ids[0]}"), "crm")["state"] == "delivered"

    again = await admin.cli("retry", str(first["id"]))
    status, conflict = await admin.api("POST", f"/deliveries/{first['id']}/retry")
    assert (status, conflict["error"]) == (409, "conflict")
    assert (again.code, again.out, again.err) == (1, "", f"hookgate: {conflict['detail']}\n")

    everything = await admin.cli("retry", "--destination", "crm")
    assert everything.code == 0, everything
    assert everything.out == "crm: 2 dead deliveries made pending again\n"
    await admin.settled()
    assert (await admin.get("/messages", state="dead"))["items"] == []
    none_left = await admin.cli_json("retry", "--destination", "crm", "--since", "1h")
    assert none_left == {"retried": 0}


async def test_replay(admin: Admin, client: aiohttp.ClientSession, downstream: Downstream) -> None:
    message_id = await accept(admin, client, {"type": "order.created"})
    await downstream.wait_count(1)
    await admin.settled()

    replayed = await admin.cli("replay", message_id, "--destination", "orders")
    assert replayed.code == 0, replayed
    assert replayed.out.splitlines()[0] == f"replayed {message_id}: 1 new delivery"
    await downstream.wait_count(2)
    assert [r.webhook_id for r in downstream.requests] == [message_id, message_id]

    everywhere = await admin.cli_json("replay", message_id)
    assert sorted(d["destination"] for d in everywhere["deliveries"]) == ["crm", "orders"]
    assert all(d["message_id"] == message_id for d in everywhere["deliveries"])
    await downstream.wait_count(3)


# -- errors and where the API is ------------------------------------------------------


async def test_errors_are_the_apis_detail_in_one_line(admin: Admin) -> None:
    missing = "msg_0000000000000001"
    status, answer = await admin.api("GET", f"/messages/{missing}")
    assert status == 404
    run = await admin.cli("messages", "show", missing)
    assert (run.code, run.out, run.err) == (1, "", f"hookgate: {answer['detail']}\n")

    status, answer = await admin.api("POST", "/destinations/nowhere/pause")
    assert status == 404
    run = await admin.cli("pause", "nowhere")
    assert (run.code, run.err) == (1, f"hookgate: {answer['detail']}\n")

    status, answer = await admin.api("GET", "/stats", token="wrong")
    assert (status, answer["error"]) == (401, "unauthorized")
    run = await admin.cli("messages", "list", "--token", "wrong")
    assert (run.code, run.err) == (1, f"hookgate: {answer['detail']}\n")

    status, answer = await admin.api("GET", "/messages", since="yesterday")
    assert status == 400
    run = await admin.cli("messages", "list", "--since", "yesterday")
    assert (run.code, run.err) == (1, f"hookgate: {answer['detail']}\n")


async def test_every_api_error_is_json_even_from_the_router(
    admin: Admin, client: aiohttp.ClientSession
) -> None:
    """A method a route does not take, a route that does not exist, a time past the year
    9999: the API's JSON errors (aiohttp answered text, and the times a 500 and a
    traceback in the log)."""
    message_id = await accept(admin, client, {"type": "order.created"})
    url = admin.daemon.admin_url(f"/api/v1/messages/{message_id}")
    async with client.delete(url, headers={"Authorization": f"Bearer {TOKEN}"}) as answer:
        assert answer.status == 405
        assert answer.headers["Allow"] == "GET, HEAD"
        assert (await answer.json())["error"] == "method_not_allowed"
    status, answer = await admin.api("POST", "/stats")
    assert (status, answer["error"]) == (405, "method_not_allowed")
    for path in ("", "/", "/nope", "/messages/"):
        status, answer = await admin.api("GET", path)
        assert (status, answer["error"]) == (404, "not_found"), path
    # Without the token, no route is told from one that does not exist.
    status, answer = await admin.api("GET", "/nope", token="wrong")
    assert (status, answer["error"]) == (401, "unauthorized")
    for param in ("since", "until"):
        status, answer = await admin.api("GET", "/messages", **{param: "99999999999999999999"})
        assert (status, answer["error"]) == (400, "bad_request")
        assert answer["detail"] == f"{param}: expected a time before the year 10000"
    # The last second ISO 8601 writes is still a time.
    status, _ = await admin.api("GET", "/messages", until="253402300799")
    assert status == 200
    assert "Traceback" not in admin.daemon.stderr() + admin.daemon.stdout()


async def test_admin_api_not_listening(admin: Admin) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = await admin.cli("status", "--admin-url", url)
    assert run.code == 1
    assert run.err == f"hookgate: cannot connect to {url}/readyz: connection refused\n"


async def test_config_and_token_from_the_environment(admin: Admin) -> None:
    by_env = await asyncio.to_thread(
        run_cli, "messages", "list", env={"HOOKGATE_CONFIG": str(admin.daemon.config_path)}
    )
    assert (by_env.returncode, by_env.stdout) == (0, "no messages\n"), by_env.stderr

    url = admin.daemon.admin_url("")
    token_env = await asyncio.to_thread(
        run_cli,
        "status",
        "--admin-url",
        url,
        "-c",
        str(admin.daemon.folder / "not-read.toml"),
        env={"HOOKGATE_ADMIN_TOKEN": TOKEN},
    )
    assert token_env.returncode == 0, token_env.stderr
    assert token_env.stdout.startswith(f"hookgate at {url}: ready\n")


async def test_stats_name_every_destination_and_why_deliveries_died(
    admin: Admin, client: aiohttp.ClientSession
) -> None:
    message_id = await accept(admin, client, {"type": "order.created"})
    await admin.settled()
    stats = await admin.get("/stats")
    # Configured destinations are listed even when nothing is pending or dead there.
    assert stats["destinations"] == {
        "orders": {"pending": 0, "dead": 0, "delivered": 1},
        "crm": {"pending": 0, "dead": 1, "delivered": 0},
    }
    # A 410 killed crm's only delivery: nothing is left to back off from.
    listed = {d["name"]: d["state"] for d in (await admin.get("/destinations"))["items"]}
    assert listed == {"orders": "ok", "crm": "ok"}
    async with client.get(admin.daemon.admin_url("/readyz")) as answer:
        ready = await answer.json()
    assert ready["destinations"]["crm"] == {"state": "ok", "pending": 0}
    (dead,) = (await admin.get("/deliveries", destination="crm"))["items"]
    assert (dead["state"], dead["dead_reason"]) == ("dead", "gone")
    (delivered,) = (await admin.get("/deliveries", destination="orders"))["items"]
    assert delivered["dead_reason"] is None
    shown = await admin.cli("messages", "show", message_id)
    assert shown.code == 0, shown
    assert "dead: gone (the destination answered 410 Gone)" in shown.out
