"""The floor: the least a Python pre-forked blocking-accept HTTP server can do per connection.

    python -m bench.minimal_server 2      # 2 worker processes; prints {"port": P, "pids": [...]}

accept(), one recv(), sendall() of a fixed HTTP/1.0 reply of the same size as
the kit's, close(): no timeout, no event log, no parsing.  The benchmark runs it
beside the kit and nginx, so the gap between it and the kit is what the kit's
features cost.  SIGTERM stops it; it stops its own workers by their PIDs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

BODY = b"served by worker 0 (pid 12345, thread 12345)\n"
REPLY = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))


def worker(listener: socket.socket) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(REPLY)
        conn.close()


def main() -> int:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                worker(listener)
            finally:
                os._exit(0)
        pids.append(pid)

    def stop(*_: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"port": listener.getsockname()[1], "pids": pids}), flush=True)
    while True:
        time.sleep(1)
        if os.getppid() == 1:  # our parent died: do not linger
            stop()


if __name__ == "__main__":
    sys.exit(main())
