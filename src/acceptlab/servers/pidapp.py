"""The smallest app a real Python server can run for the kit: every reply names its process.

``wsgi`` is for gunicorn (``acceptlab.servers.pidapp:wsgi``), ``asgi`` for uvicorn
(``acceptlab.servers.pidapp:asgi``).  The body is ``pid 4242`` and a newline, so a client
(and :mod:`acceptlab.observe`) can tell which worker answered without asking the server anything
else.  ``ACCEPTLAB_SLOW_MS`` (an environment variable read at import) makes every request
take that many milliseconds, sleeping: the "slow request" load of notebook 09.
"""

from __future__ import annotations

import asyncio
import os
import time

_SLOW = float(os.environ.get("ACCEPTLAB_SLOW_MS", "0")) / 1000


def _body() -> bytes:
    return f"pid {os.getpid()}\n".encode()


def wsgi(environ: dict, start_response) -> list[bytes]:
    """WSGI: ``200 OK``, ``pid N``, and the connection closed after it."""
    if _SLOW:
        time.sleep(_SLOW)
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]


async def asgi(scope: dict, receive, send) -> None:
    """ASGI: the same reply; the lifespan messages are acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if _SLOW:
        await asyncio.sleep(_SLOW)
    body = _body()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
