"""What a run is, as values: the pool, the load, and how to carry the run out.

Three frozen dataclasses travel from the command line (or a notebook) down to
the workers and into a saved run's ``meta.json``:

* :class:`PoolSpec`: the server: how many workers of which kind, how each
  waits (the strategy and its own options), what they speak and do per
  request, where they listen, and how they are supervised.
* :class:`LoadSpec`: the client: how many connections, sequential, closed
  loop (``concurrency``) or open loop (``rate``), over how many client
  processes, with which seed.
* :class:`RunOptions`: what is recorded beside the run and how it is driven
  (a label, queue sampling, tracing, rolling restarts, a progress bar, a stop
  Event): not what the server or the client does.

Each spec checks itself once, when it is made: a bad value is a one-line
``ValueError`` naming the field.  Every default is written here and nowhere
else (``backlog=128``, ``duration=60.0``...).  A spec is a value: change one
field with :func:`dataclasses.replace` (which validates again), record it with
:meth:`PoolSpec.as_dict`, read it back with :meth:`PoolSpec.from_dict`.

Keyword shortcuts.  ``run_experiment(workers=4, gap=0.001)`` reads better in a
lesson than two spec objects, so the functions that take specs also take their
fields as keywords; :func:`build_specs` routes each keyword to the spec that
owns that field (``protocol`` to both: the load speaks what the pool speaks).

This module imports nothing from the kit but the strategy registry, so every
layer can use it.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from .registry import STRATEGY_RECORDS, strategy_record

__all__ = ["Limits", "PoolSpec", "LoadSpec", "RunOptions", "build_specs", "KINDS",
           "START_METHODS", "PROTOCOL_NAMES", "read_work", "CLIENT_TIMEOUT"]

KINDS = ("thread", "process", "hybrid")
START_METHODS = ("fork", "spawn", "forkserver")
PROTOCOL_NAMES = ("zen", "lancelot", "http")  # acceptlab.server.protocol.PROTOCOLS, by name
WORK_MODELS = ("none", "sleep", "spin")  # acceptlab.server.work: what each costs

CLIENT_TIMEOUT = 2.0
"""Default seconds any single wait of a client may last (connect, send, or one reply).

Loopback only: a healthy server on this machine answers in well under a
millisecond, and the slowest lessons' waits stay near one second (the
reference run with one slow worker under SO_REUSEPORT has the worst, 1.1 s,
from queueing behind that worker).  Two seconds keeps those, while a server
that will never answer costs two seconds, not a minute."""


def _bad(name: str, value: object, rule: str) -> ValueError:
    """The one shape of every spec error: ``workers=0: must be at least 1``."""
    return ValueError(f"{name}={value!r}: {rule}")


def _check(spec: object, *, choices: Mapping[str, Iterable[str]] | None = None,
           at_least: Mapping[str, float] | None = None,
           above: Mapping[str, float] | None = None) -> None:
    """Check fields: one of their choices, or at least / more than a floor (None is not checked)."""
    for name, allowed in (choices or {}).items():
        value = getattr(spec, name)
        if value not in allowed:
            raise _bad(name, value, f"choose one of {', '.join(allowed)}")
    for name, floor in (at_least or {}).items():
        value = getattr(spec, name)
        if value is not None and value < floor:
            raise _bad(name, value, f"must be at least {floor:g}")
    for name, floor in (above or {}).items():
        value = getattr(spec, name)
        if value is not None and value <= floor:
            raise _bad(name, value, f"must be more than {floor:g}")


def read_work(text: str) -> tuple[str, float]:
    """Read a work model: ``'none'``, ``'sleep:5'`` or ``'spin:2.5'`` -> ``('sleep', 5.0)``.

    The grammar lives here, with the specs that carry it;
    :func:`acceptlab.server.work.parse_work` turns the pair into work a worker does.
    """
    kind, _, ms = str(text).partition(":")
    if kind == "none" and not ms:
        return "none", 0.0
    if kind in ("sleep", "spin"):
        try:
            value = float(ms)
        except ValueError:
            value = -1.0
        if value >= 0:
            return kind, value
    raise ValueError(f"work={text!r}: use none, sleep:<ms> or spin:<ms>")


@dataclass(frozen=True)
class Limits:
    """How much a server tolerates from one client before it complains and hangs up.

    ``max_request``: bytes one request may take before its terminator arrives.
    ``idle_timeout``: seconds a client may stay silent (a slow client holding a
    worker is the subject of the slow-clients lesson); ``None`` waits forever,
    the book's behaviour, and no defence at all.
    """

    max_request: int = 4096
    idle_timeout: float | None = 5.0

    def __post_init__(self) -> None:
        if self.max_request < 1:
            raise _bad("max_request", self.max_request, "a request needs at least 1 byte")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise _bad("idle_timeout", self.idle_timeout,
                       "a client needs more than 0 seconds to speak (None: wait forever)")


def _plain(value: Any) -> Any:
    """A value as JSON gives it back: tuples become lists, inside dicts too."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class _Spec:
    """What the three specs share: a dict to record, and the way back from one."""

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain values (lists for tuples), as ``meta.json`` will give it back."""
        return {name: _plain(value)
                for name, value in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """A spec from :meth:`as_dict`'s output; keys this spec lacks are ignored.

        Ignoring unknown keys is what lets one function read both a new run's
        ``meta['pool']`` and an old run's flat ``meta`` (see
        :attr:`acceptlab.lab.experiment.Run.pool_spec`).
        """
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        given = {key: value for key, value in values.items() if key in names}
        if isinstance(given.get("limits"), Mapping):
            given["limits"] = Limits(**given["limits"])
        return cls(**given)


@dataclass(frozen=True)
class PoolSpec(_Spec):
    """The server side of a run: N workers sharing one listening socket.

    Args:
        workers: how many workers (slots); for ``kind='hybrid'``, processes.
        kind: ``'process'``, ``'thread'``, or ``'hybrid'`` (``workers``
            processes of ``threads`` threads each: gunicorn's gthread, Puma).
        threads: threads per process for ``kind='hybrid'`` (1 otherwise).
        strategy: how each worker waits (:data:`acceptlab.registry.STRATEGY_RECORDS`).
        strategy_options: the strategy's own settings, e.g.
            ``{"accept_timeout": 0.5}`` for ``timeout`` or ``{"every": 8}`` for
            ``reorder``; those not given take the record's defaults
            (:attr:`settings` has them all).
        protocol: ``'zen'``, ``'lancelot'`` or ``'http'``.
        work: ``'none'``, ``'sleep:MS'``, ``'spin:MS'``, or one per slot
            (cycled), e.g. ``('sleep:30', 'sleep:10', 'sleep:10')`` for one
            slow worker.
        start_method: ``'fork'``, ``'spawn'`` or ``'forkserver'``; None means
            the platform's default (a run records the one it used).
        host: the address to listen on (loopback by default).
        port: the port; 0 lets the kernel pick a free one.
        backlog: the accept queue's length.
        limits: per-connection defences (size limit, idle timeout).
        supervise: replace workers that die (the book's supervisor).
        interval: seconds between the supervisor's looks at the workers.
        boot_attempts: how many times in a row a slot's worker may die before
            it is ready before the slot is left down.
        record: False turns the event log off, only to measure what it costs.
        join_port: True joins a port where another server already listens (only
            ``reuseport`` can); False refuses such a port.
    """

    workers: int = 4
    kind: str = "process"
    threads: int = 1
    strategy: str = "blocking"
    strategy_options: Mapping[str, float] = field(default_factory=dict)
    protocol: str = "zen"
    work: str | tuple[str, ...] = "none"
    start_method: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    backlog: int = 128
    limits: Limits = Limits()
    supervise: bool = True
    interval: float = 0.1
    boot_attempts: int = 3
    record: bool = True
    join_port: bool = False

    def __post_init__(self) -> None:
        _check(self, choices={"kind": KINDS, "strategy": STRATEGY_RECORDS,
                              "protocol": PROTOCOL_NAMES}, at_least={"workers": 1})
        if self.threads < 1 or (self.threads > 1 and self.kind != "hybrid"):
            raise _bad("threads", self.threads,
                       "more than one thread per worker needs kind='hybrid' (and at least 1)")
        declared = strategy_record(self.strategy).options
        unknown = sorted(set(self.strategy_options) - set(declared))
        if unknown:
            has = ", ".join(declared) or "none"
            raise _bad("strategy_options", dict(self.strategy_options),
                       f"{self.strategy} has no option {unknown[0]!r} (its options: {has})")
        object.__setattr__(self, "strategy_options", dict(self.strategy_options))
        if not isinstance(self.work, str):  # a list from a caller or from JSON: keep a tuple
            object.__setattr__(self, "work", tuple(self.work))
            if not self.work:
                raise _bad("work", self.work, "give at least one work model")
        for one in self.works:
            read_work(one)
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise _bad("start_method", self.start_method,
                       f"choose one of {', '.join(START_METHODS)} (or None: the default)")
        if not 0 <= self.port <= 65535:
            raise _bad("port", self.port, "not a TCP port (0-65535; 0 means any free one)")
        _check(self, at_least={"backlog": 0, "boot_attempts": 1}, above={"interval": 0})

    @property
    def settings(self) -> dict[str, float]:
        """The strategy's options in force: its record's defaults, overridden by ``strategy_options``."""
        return {**strategy_record(self.strategy).options, **self.strategy_options}

    @property
    def works(self) -> tuple[str, ...]:
        """``work`` as a tuple, one model or one per slot."""
        return (self.work,) if isinstance(self.work, str) else self.work

    def work_for(self, slot: int) -> str:
        """The work model of slot ``slot`` (a per-slot list is cycled)."""
        return self.works[slot % len(self.works)]

    @property
    def slots(self) -> int:
        """Event-log slots: one per worker thread (``workers * threads``)."""
        return self.workers * self.threads

    @property
    def label(self) -> str:
        """``'strategy/kind'``: how tables and figures name a run by default."""
        return f"{self.strategy}/{self.kind}"


@dataclass(frozen=True)
class LoadSpec(_Spec):
    """The client side of a run: the connections fired at the pool.

    Args:
        protocol: what to speak (``'zen'``, ``'lancelot'``, ``'http'``).
        connections: how many connection numbers to fire at most.
        concurrency: a closed loop of this many clients *per client process*
            (1 with one process: sequential).  Ignored with ``rate``.
        rate: an open loop of Poisson arrivals at this many per second *in all*.
        gap: seconds each client pauses between connections.
        duration: seconds after which no connection starts; whatever is still
            going a quarter of a second later is cut (``unfinished``).
        processes: client processes to split the connections over, each
            running the same mode (``processes=2, concurrency=16`` keeps 32 in
            flight).
        seed: makes the open loop's arrival times repeatable (a run with a
            ``rate`` and no seed draws one and records it).
        retries: times a failed connection is tried again (each attempt a row).
        timeout: seconds any single wait of a client may last
            (:data:`CLIENT_TIMEOUT`: short, for loopback).
    """

    protocol: str = "zen"
    connections: int = 200
    concurrency: int = 1
    rate: float | None = None
    gap: float = 0.0
    duration: float = 60.0
    processes: int = 1
    seed: int | None = None
    retries: int = 0
    timeout: float = CLIENT_TIMEOUT

    def __post_init__(self) -> None:
        _check(self, choices={"protocol": PROTOCOL_NAMES},
               at_least={"concurrency": 1, "processes": 1, "connections": 0, "gap": 0,
                         "retries": 0},
               above={"rate": 0, "duration": 0, "timeout": 0})


@dataclass(frozen=True)
class RunOptions(_Spec):
    """How a run is carried out and recorded, beside what the server and client do.

    Args:
        label: the run's name in tables and figures (default ``'strategy/kind'``).
        sample_queue: read the accept-queue depth every ``queue_interval``
            seconds (Linux only; elsewhere ``meta['queue']`` says why not).
        queue_interval: seconds between accept-queue samples.
        trace: record the kernel's wakeups and TCP state changes (root and
            tracefs only; elsewhere a warning and ``meta['trace']`` say why).
        restart_every: restart one worker after another every this many
            seconds while the load runs (:mod:`acceptlab.lab.restarts`).
        graceful: restart by asking the worker to finish and leave (True) or
            by killing it (False).
        progress: show a progress bar while the load runs (not recorded).
        stop: an Event that ends the run early when set (the CLI sets it on
            Ctrl-C); not recorded.
    """

    label: str | None = None
    sample_queue: bool = False
    queue_interval: float = 0.002
    trace: bool = False
    restart_every: float | None = None
    graceful: bool = True
    progress: bool = False
    stop: threading.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check(self, above={"queue_interval": 0, "restart_every": 0})

    def as_dict(self) -> dict[str, Any]:
        """What a saved run records: everything but ``progress`` and ``stop``."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if f.name not in ("progress", "stop")}


# -- keyword shortcuts ---------------------------------------------------------------------------

_FIELDS = {cls: {f.name for f in fields(cls)} for cls in (PoolSpec, LoadSpec, RunOptions)}

# Old name -> the one name used everywhere now: a saved run's meta may hold the old one, and a
# call that still uses it is told the new spelling.
RENAMED = {"client_processes": "processes"}


def build_specs(pool: PoolSpec | None = None, load: LoadSpec | None = None,
                options: RunOptions | None = None, *, caller: str = "run_experiment",
                only: tuple[type, ...] = (PoolSpec, LoadSpec, RunOptions),
                **shortcuts: Any) -> tuple[PoolSpec, LoadSpec, RunOptions]:
    """The three specs, from the ones given and keyword shortcuts on top of them.

    Each shortcut names a field of :class:`PoolSpec`, :class:`LoadSpec` or
    :class:`RunOptions` and replaces it there (``protocol`` in both the pool
    and the load; with no ``load`` given, the load speaks the pool's
    protocol).  ``build_specs(workers=2, gap=0.001)`` and
    ``build_specs(PoolSpec(workers=2), LoadSpec(gap=0.001))`` give the same
    specs.  A keyword that is no field of the classes in ``only`` is a
    ``TypeError`` naming ``caller``, as for any function.
    """
    for old, new in RENAMED.items():
        if old in shortcuts:
            raise TypeError(f"{caller}({old}=...) is now {new}=...")
    known = set().union(*(_FIELDS[cls] for cls in only))
    unknown = sorted(set(shortcuts) - known)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    pool = _with(pool or PoolSpec(), shortcuts)
    load = _with(load or LoadSpec(protocol=pool.protocol), shortcuts)
    options = _with(options or RunOptions(), shortcuts)
    return pool, load, options


def _with(spec, shortcuts: Mapping[str, Any]):
    """``spec`` with the shortcuts that name its fields (validated again), or ``spec`` itself."""
    mine = {key: value for key, value in shortcuts.items() if key in _FIELDS[type(spec)]}
    return dataclasses.replace(spec, **mine) if mine else spec
