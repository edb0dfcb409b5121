"""The baseline: a bare aiohttp + uvloop server that reads the body and answers 200.

Usage: python bench/bare_server.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
