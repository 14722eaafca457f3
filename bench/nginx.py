"""nginx as a benchmark reference: a temporary config, 127.0.0.1 only, our own child.

    with Nginx(workers=2) as server:
        print(server.port, server.worker_pids())

The config is the fairest match for the kit's ``http`` protocol: ``return 200``
with a short body, no access log, keep-alive off (``keepalive_timeout 0``), so
every request is a new connection exactly as with the kit's HTTP/1.0 server.
nginx runs with ``daemon off;`` as a child of this process and is stopped by
its PID (SIGQUIT, then SIGKILL), never by name.  Every file it writes (pid,
error log, temp paths) lives in a temporary directory removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .procfs import children
from .servers import ServerProcess, free_port, wait_for_port

CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=128;
        location / {{ return 200 "served by nginx\\n"; }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """Path of the nginx executable, or None (Debian puts it in /usr/sbin)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


class Nginx(ServerProcess):
    """One nginx master (our child) with ``workers`` worker processes on a free loopback port."""

    def __init__(self, workers: int = 2, port: int | None = None) -> None:
        self.workers = workers
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="acceptlab-nginx-"))
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        binary = nginx_binary()
        if binary is None:
            raise FileNotFoundError("nginx not found (Debian: apt-get install nginx-light)")
        config = self.dir / "nginx.conf"
        config.write_text(CONFIG.format(workers=self.workers, dir=self.dir, port=self.port))
        # -e: the error log nginx opens before it reads the config (else /var/log/nginx)
        self.process = subprocess.Popen(
            [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, self.process, timeout=5.0)
            deadline = time.monotonic() + 5.0
            while len(self.worker_pids()) < self.workers:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx workers did not start")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def worker_pids(self) -> list[int]:
        """The worker processes' PIDs (the master's children)."""
        return children(self.process.pid) if self.process else []

    def stop(self) -> None:
        """SIGQUIT (graceful) to OUR master by its PID, SIGKILL if it lingers; remove the files."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(3)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def label(self) -> str:
        return f"nginx ({self.workers} workers)"
