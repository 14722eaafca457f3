"""Small servers of the kit's own, one per accept topology, for tests/test_classify.py.

    python tests/topologies/accept_loops.py NAME [--workers N]

Each listens on a free port of 127.0.0.1, starts its workers and prints one line,
``ready PORT PID``, then answers every HTTP request with ``pid N`` (the worker's) and
closes.  SIGTERM stops it: the parent kills its workers by their pids and waits for them.
Every process also dies with its parent (``PR_SET_PDEATHSIG``), so a killed test leaves
nothing behind.  Loopback only; nothing here is a real server's code.

The topologies (each a few lines of the worker loop):

==================  ===========================================================
pi-mutex-epoll      a PTHREAD_PRIO_INHERIT, robust, process-shared pthread lock
                    in shared memory around epoll_wait + accept (uWSGI's
                    --thunder-lock)
flock-accept        flock() on a shared file around accept
fcntl-accept        fcntl() record lock (lockf) around accept
sysvsem-accept      a System V semaphore around accept (Apache's sysvsem)
defer-accept        blocking accept on a listener with TCP_DEFER_ACCEPT (30 s)
master-polls-pipe   blocking accept; the master holds the listener and polls a pipe
reuseport           one SO_REUSEPORT listener per worker, blocking accept
epoll-exclusive     one epoll per worker, the shared listener with EPOLLEXCLUSIVE
thread-pool         one process: the main thread accepts, a pool of threads serves
==================  ===========================================================
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import mmap
import os
import queue
import select
import signal
import socket
import sys
import tempfile
import threading

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
DEFER_SECONDS = 30


def die_with_parent() -> None:
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def serve(conn: socket.socket) -> None:
    """Read one HTTP request, answer ``pid N``, close."""
    with conn:
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            body = f"pid {os.getpid()}\n".encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(body) + body)
        except OSError:
            pass


def listener(*, reuseport: bool = False, port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


# ----------------------------------------------------------------------------- worker loops

def pi_mutex(listen: socket.socket, shared: "PiLock") -> None:
    poller = select.epoll()
    poller.register(listen.fileno(), select.EPOLLIN)
    while True:
        shared.lock()
        poller.poll()
        conn, _ = listen.accept()
        shared.unlock()
        serve(conn)


def flocked(listen: socket.socket, path: str) -> None:
    lock = open(path, "rb")  # its own open file: flock locks belong to an open file
    while True:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn, _ = listen.accept()
        fcntl.flock(lock, fcntl.LOCK_UN)
        serve(conn)


def record_locked(listen: socket.socket, path: str) -> None:
    lock = open(path, "rb+")
    while True:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # fcntl(F_SETLKW)
        conn, _ = listen.accept()
        fcntl.lockf(lock, fcntl.LOCK_UN)
        serve(conn)


def semaphored(listen: socket.socket, semid: int) -> None:
    while True:
        semop(semid, -1)
        conn, _ = listen.accept()
        semop(semid, +1)
        serve(conn)


def blocking(listen: socket.socket) -> None:
    while True:
        conn, _ = listen.accept()
        serve(conn)


def exclusive(listen: socket.socket) -> None:
    listen.setblocking(False)
    poller = select.epoll()
    poller.register(listen.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    while True:
        poller.poll()
        try:
            conn, _ = listen.accept()
        except BlockingIOError:
            continue
        conn.setblocking(True)
        serve(conn)


# ----------------------------------------------------------------------------- the locks

class PiLock:
    """A pthread lock in anonymous shared memory: process-shared, priority-inheriting, robust."""

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, 4096)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork
        self.address = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(self.memory)))
        attributes = ctypes.create_string_buffer(64)
        if LIBC.pthread_mutexattr_init(attributes):
            raise OSError(ctypes.get_errno(), "pthread_mutexattr_init")
        for call in (LIBC.pthread_mutexattr_setpshared,  # 1: PTHREAD_PROCESS_SHARED
                     LIBC.pthread_mutexattr_setprotocol,  # 1: PTHREAD_PRIO_INHERIT
                     LIBC.pthread_mutexattr_setrobust):  # 1: PTHREAD_MUTEX_ROBUST
            if call(attributes, 1):
                raise OSError(ctypes.get_errno(), call.__name__)
        if LIBC.pthread_mutex_init(self.address, attributes):
            raise OSError(ctypes.get_errno(), "pthread_mutex_init")

    def lock(self) -> None:
        if LIBC.pthread_mutex_lock(self.address) == 130:  # EOWNERDEAD: a worker died holding it
            LIBC.pthread_mutex_consistent(self.address)

    def unlock(self) -> None:
        LIBC.pthread_mutex_unlock(self.address)


class SemBuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short),
                ("sem_flg", ctypes.c_short)]


SEM_UNDO, IPC_CREAT, IPC_RMID, SETVAL = 0x1000, 0o1000, 0, 16


def semaphore() -> int:
    semid = LIBC.semget(0, 1, IPC_CREAT | 0o600)  # IPC_PRIVATE
    if semid < 0 or LIBC.semctl(semid, 0, SETVAL, 1) < 0:
        raise OSError(ctypes.get_errno(), "semget/semctl")
    return semid


def semop(semid: int, change: int) -> None:
    operation = SemBuf(0, change, SEM_UNDO)
    while LIBC.semop(semid, ctypes.byref(operation), 1) < 0:
        if ctypes.get_errno() != 4:  # EINTR
            raise OSError(ctypes.get_errno(), "semop")


# ----------------------------------------------------------------------------- the parent

def fork_workers(count: int, loop, *args) -> list[int]:
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                loop(*args)
            finally:
                os._exit(0)
        pids.append(pid)
    return pids


def thread_pool(listen: socket.socket, threads: int) -> None:
    """One acceptor (this thread) hands each connection to a pool of threads through a queue."""
    work: queue.Queue = queue.Queue()

    def pool_thread() -> None:
        while True:
            serve(work.get())

    for _ in range(threads):
        threading.Thread(target=pool_thread, daemon=True).start()
    while True:
        conn, _ = listen.accept()
        work.put(conn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    die_with_parent()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    workers: list[int] = []
    cleanup = []
    try:
        name, count = args.name, args.workers
        if name == "reuseport":
            holder = socket.socket()  # bound, not listening: it only keeps the port for us
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            workers = fork_workers(count, lambda: blocking(listener(reuseport=True, port=port)))
        else:
            listen = listener()
            port = listen.getsockname()[1]
            if name == "defer-accept":
                listen.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_SECONDS)
            if name in ("flock-accept", "fcntl-accept"):
                handle, path = tempfile.mkstemp(prefix="acceptlab-lock-")
                os.close(handle)
                cleanup.append(lambda: os.unlink(path))
                loop = flocked if name == "flock-accept" else record_locked
                workers = fork_workers(count, loop, listen, path)
            elif name == "sysvsem-accept":
                semid = semaphore()
                cleanup.append(lambda: LIBC.semctl(semid, 0, IPC_RMID))
                workers = fork_workers(count, semaphored, listen, semid)
            elif name == "pi-mutex-epoll":
                workers = fork_workers(count, pi_mutex, listen, PiLock())
            elif name == "epoll-exclusive":
                workers = fork_workers(count, exclusive, listen)
            elif name in ("defer-accept", "master-polls-pipe"):
                workers = fork_workers(count, blocking, listen)
            elif name == "thread-pool":
                print(f"ready {port} {os.getpid()}", flush=True)
                thread_pool(listen, count)
            else:
                parser.error(f"unknown topology {name}")
        print(f"ready {port} {os.getpid()}", flush=True)
        if name == "master-polls-pipe":  # the master waits on a pipe, as a supervisor would
            reader, _writer = os.pipe()
            watch = select.poll()
            watch.register(reader, select.POLLIN)
            while True:
                watch.poll()
        while True:
            signal.pause()
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        for undo in cleanup:
            undo()


if __name__ == "__main__":
    sys.exit(main())
