"""Watching a class from outside: whose process is whose, what each holds, what each costs.

A :class:`Watcher` thread samples ``/proc`` every ``interval`` seconds while a class runs
(Linux, and root to read other users' descriptors).  Each student's processes are their
Jupyter server and every process below it (kernels, the pool's workers, the client
processes).  From each sample it keeps:

* **every process seen** (pid, start time, student), so that at the end each one can be
  checked to be gone, by pid, with the start time telling a reused pid from the original;
* **listening ports**: which student's processes hold each listening socket
  (``/proc/net/tcp*`` + ``/proc/PID/fd``); a port held by two students at once collides;
* **files and folders** each student's processes have open under the temporary folders
  (the pool's event logs, ``/dev/shm`` semaphores, ...); one open by two students collides;
* **tracefs instances** (``instances/acceptlab-OWNER-*``): their owner, and the threads
  and port their filters name;
* **network namespaces** (``/proc/PID/ns/net``) other than the watcher's own;
* **cost**: per student, the peak number of processes and threads, and the peak memory
  (the sum of each process's PSS, from ``smaps_rollup``: shared pages divided among the
  processes that share them, so forked workers are not counted twice).

It only reads; it never signals anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
TEMPORARY = (tempfile.gettempdir(), "/dev/shm")
# Not temporary even when it lies below /tmp (a clone in /tmp, as CI may make): the kit's own
# repository and the Python installation every student's kernel reads (fonts, modules).
INSTALLED = tuple(sorted({os.path.join(os.path.realpath(path), "") for path in (
    sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parent.parent))}))
PAGE = os.sysconf("SC_PAGE_SIZE")

__all__ = ["Watcher", "Cost", "gone", "start_time"]


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, is [0])."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22), or None if it is gone."""
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def gone(pid: int, started: int) -> bool:
    """Has the process ``pid`` that started at ``started`` exited?  (A zombie counts as gone.)"""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return True
    return int(fields[19]) != started or fields[0] in ("Z", "X")


def _listening_inodes() -> dict[int, int]:
    """Socket inode -> port of every listening TCP socket in this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[3] == "0A":  # TCP_LISTEN
                    found[int(parts[9])] = int(parts[1].rsplit(":", 1)[1], 16)
    return found


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass
class Cost:
    """One student's peak cost over the watch."""

    processes: int = 0
    threads: int = 0
    pss_mb: float = 0.0
    rss_mb: float = 0.0  # the sum of RSS: counts shared pages once per process (an upper bound)


@dataclass
class Watcher:
    """Sample the class's processes until :meth:`stop`; then read the attributes below.

    Args:
        students: each student's name and the pid of their Jupyter server.
        also: other pids whose trees are watched for leftovers (the hub: it holds the
            proxy and the servers), not attributed to any student.
        interval: seconds between samples.
        descriptors_every: read the descriptors (ports, files) every this many samples.
        memory_every: take PSS every this many samples (it costs a page-table walk).
    """

    students: dict[str, int]
    also: list[int] = field(default_factory=list)
    interval: float = 0.1
    descriptors_every: int = 3
    memory_every: int = 10

    def __post_init__(self) -> None:
        self.seen: dict[tuple[int, int], str] = {}  # (pid, start time) -> student ('' hub)
        self.owner_of_tid: dict[int, set[str]] = defaultdict(set)  # tid -> students
        self.ports: dict[str, set[int]] = defaultdict(set)  # student -> every port it listened on
        self.port_clashes: list[str] = []
        self.files: dict[str, set[str]] = defaultdict(set)  # path -> students (ever)
        self.file_clashes: list[str] = []
        self.instances: dict[str, dict] = {}  # tracefs instance name -> what it traced
        self.netns: dict[str, set[str]] = defaultdict(set)  # namespace -> students
        self.cost: dict[str, Cost] = {name: Cost() for name in self.students}
        self.samples = 0
        self._own_netns = os.readlink("/proc/self/ns/net")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="class-watcher", daemon=True)
        self._tracefs = next((Path(p) / "instances" for p in TRACEFS
                              if (Path(p) / "instances").is_dir()), None)

    def start(self) -> "Watcher":
        self._thread.start()
        return self

    def stop(self) -> "Watcher":
        self._stop.set()
        self._thread.join(30)
        self.sample()  # one last look
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    # -- one sample -----------------------------------------------------------------------------
    def _trees(self) -> dict[int, str]:
        """pid -> student for every process now below a student's server ('' below ``also``)."""
        children: dict[int, list[int]] = defaultdict(list)
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    children[int(_stat_fields(name)[1])].append(int(name))
        owner: dict[int, str] = {}
        roots = [(pid, "") for pid in self.also] + [(pid, s) for s, pid in self.students.items()]
        for root, student in roots:  # students last: their label wins over the hub's
            level = [root]
            while level:
                for pid in level:
                    owner[pid] = student
                level = [child for pid in level for child in children.get(pid, ())]
        return owner

    def sample(self) -> None:
        owner = self._trees()
        listening = _listening_inodes() if self.samples % self.descriptors_every == 0 else {}
        holders: dict[int, set[str]] = defaultdict(set)  # port -> students, this sample
        opened: dict[str, set[str]] = defaultdict(set)
        counts = {name: Cost() for name in self.students}
        current: dict[int, str] = {}  # tid (and pid) -> student, in this sample
        take_memory = self.samples % self.memory_every == 0
        take_descriptors = self.samples % self.descriptors_every == 0
        for pid, student in owner.items():
            started = start_time(pid)
            if started is None:
                continue
            self.seen.setdefault((pid, started), student)
            if not student:  # the hub's side: what it holds open is inherited, not a clash
                if take_descriptors:
                    self._descriptors(pid, "", listening, holders, opened)
                continue
            cost = counts[student]
            cost.processes += 1
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = _stat_fields(pid)
                cost.threads += int(fields[17])
                cost.rss_mb += int(fields[21]) * PAGE / 2**20
            if take_memory:
                cost.pss_mb += _pss_kb(pid) / 1024
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    self.owner_of_tid[int(tid)].add(student)
                    current[int(tid)] = student
            with contextlib.suppress(OSError):
                self.netns[os.readlink(f"/proc/{pid}/ns/net")].add(student)
            if take_descriptors:
                self._descriptors(pid, student, listening, holders, opened)
        for name, cost in counts.items():
            peak = self.cost[name]
            peak.processes = max(peak.processes, cost.processes)
            peak.threads = max(peak.threads, cost.threads)
            peak.rss_mb = max(peak.rss_mb, cost.rss_mb)
            if take_memory:
                peak.pss_mb = max(peak.pss_mb, cost.pss_mb)
        for port, students in holders.items():
            if len(students - {""}) > 1:
                self.port_clashes.append(f"port {port} held by {sorted(students)} at once")
        for path, students in opened.items():
            if "" in students:
                continue  # the hub's own (its log, which every server inherits as stdout)
            self.files[path] |= students
            if len(students) > 1:
                self.file_clashes.append(f"{path} open in {sorted(students)} at once")
        self._look_at_tracefs(current, holders)
        self.samples += 1

    def _descriptors(self, pid: int, student: str, listening: dict[int, int],
                     holders: dict[int, set[str]], opened: dict[str, set[str]]) -> None:
        directory = f"/proc/{pid}/fd"
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            try:
                target = os.readlink(f"{directory}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                port = listening.get(int(target[8:-1]))
                if port is not None:
                    holders[port].add(student)
                    if student:
                        self.ports[student].add(port)
            elif target.startswith(TEMPORARY) and not target.startswith(INSTALLED):
                opened[target].add(student)
                parent = os.path.dirname(target)
                if parent not in TEMPORARY:  # a private folder (an event-log folder, a home)
                    opened[parent + "/"].add(student)

    def _look_at_tracefs(self, current: dict[int, str], holders: dict[int, set[str]]) -> None:
        """Record each new instance with the students its owner and its threads belong to *now*.

        Pids are reused (``pid_max`` may be 32768), so whose a thread is must be decided
        while the instance exists, not afterwards.
        """
        if self._tracefs is None:
            return
        with contextlib.suppress(OSError):
            for instance in self._tracefs.glob("acceptlab-*"):
                if instance.name in self.instances:
                    continue
                with contextlib.suppress(OSError, ValueError):
                    owner = int(instance.name.split("-")[1])
                    woken = (instance / "events/sched/sched_wakeup/filter").read_text()
                    port = (instance / "events/sock/inet_sock_set_state/filter").read_text()
                    tids = [int(t) for t in re.findall(r"pid == (\d+)", woken)]
                    self.instances[instance.name] = {
                        "owner": current.get(owner, "?"),
                        "tids": tids,
                        "tid_owners": sorted({current.get(t, "?") for t in tids}),
                        "ports": sorted({int(p) for p in re.findall(r"port == (\d+)", port)}),
                    }
                    self.instances[instance.name]["port_owners"] = sorted(set().union(
                        *(holders.get(p, set()) for p in self.instances[instance.name]["ports"])))

    # -- after the class ------------------------------------------------------------------------
    def students_of(self, pid: int) -> set[str]:
        """The students in whose tree ``pid`` was seen, as a process or a thread (empty: never)."""
        return ({student for (seen, _), student in self.seen.items() if seen == pid and student}
                | self.owner_of_tid.get(pid, set()))

    def tracing_clashes(self) -> list[str]:
        """Instances that traced another student's threads or ports."""
        found = []
        for name, instance in self.instances.items():
            others = set(instance["tid_owners"]) - {instance["owner"], "?"}
            if others:
                found.append(f"tracefs {name} of {instance['owner']} traced threads of "
                             f"{sorted(others)}")
            strangers = set(instance["port_owners"]) - {instance["owner"]}
            if strangers:
                found.append(f"tracefs {name} of {instance['owner']} traced port(s) "
                             f"{instance['ports']}, which {sorted(strangers)} listened on")
        return found

    def netns_clashes(self) -> list[str]:
        return [f"network namespace {ns} shared by {sorted(students)}"
                for ns, students in self.netns.items()
                if ns != self._own_netns and len(students) > 1]

    def private_netns(self) -> int:
        """How many network namespaces other than the watcher's own the students' processes used."""
        return sum(ns != self._own_netns for ns in self.netns)

    def left_behind(self) -> list[str]:
        """Every process seen during the watch that has not exited (by pid and start time)."""
        return [f"pid {pid} ({student or 'hub'})" for (pid, started), student in self.seen.items()
                if not gone(pid, started)]
