"""The smallest app a real Python server can run for the kit: every reply names its process.

``wsgi`` is for gunicorn (``acceptlab.real.apps.pidapp:wsgi``), ``asgi`` for uvicorn
(``acceptlab.real.apps.pidapp:asgi``).  The body is ``pid 4242`` and a newline, so a client
(and :mod:`acceptlab.real.observe`) can tell which worker answered without asking the server anything
else.  Every request sleeps for the milliseconds written in the file named by
``ACCEPTLAB_SLOW_FILE`` (read again at most every 50 ms, so a running server can be made slow
and fast again: the "slow request" load of notebook 09); no file, no sleep.

No ``Connection`` header: the server closes after answering an HTTP/1.0 request (the kit's
load asks in HTTP/1.0, so every request is a new connection) and keeps an HTTP/1.1
connection open for the next request, as it would for any client (what
:mod:`acceptlab.real.observe` relies on to attribute a connection after its reply).
"""

from __future__ import annotations

import asyncio
import os
import time

_SLOW_FILE = os.environ.get("ACCEPTLAB_SLOW_FILE")
_slow = {"seconds": 0.0, "read_at": -1.0}


def _slowness() -> float:
    """Seconds each request waits now (the file's milliseconds, re-read every 50 ms)."""
    moment = time.monotonic()
    if _SLOW_FILE and moment - _slow["read_at"] >= 0.05:
        _slow["read_at"] = moment
        try:
            with open(_SLOW_FILE) as file:
                _slow["seconds"] = float(file.read() or 0) / 1000
        except (OSError, ValueError):
            _slow["seconds"] = 0.0
    return _slow["seconds"]


def _body() -> bytes:
    return f"pid {os.getpid()}\n".encode()


def wsgi(environ: dict, start_response) -> list[bytes]:
    """WSGI: ``200 OK`` and ``pid N``."""
    slow = _slowness()
    if slow:
        time.sleep(slow)
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
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
    slow = _slowness()
    if slow:
        await asyncio.sleep(slow)
    body = _body()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
