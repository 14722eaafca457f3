"""One record per accept strategy: what it is, where it comes from, what it predicts, what it needs.

The kit has fifteen ways for a worker to wait for its next connection (the
classes of :mod:`acceptlab.server.strategies`).  Everything else the kit says
about a strategy is written here, once, as a :class:`StrategyRecord`:

* ``waits`` and ``mechanism``: how a worker waits, and what the kernel does
  about it (with the ``docs/sources.md`` anchor of the source);
* ``origin``: who invented it (the book, Linux, nginx, Puma, Node, Envoy...),
  or that it is the kit's own;
* ``prediction``: the model of how connections spread over the workers
  under light load, and its band (:meth:`Model.predict`);
* ``requires``: platform, kernel, root, Python constants, and the feature
  :mod:`acceptlab.linux.support` tries for real; ``kinds``: the kinds of
  worker it runs with;
* ``options``: its own settings and their defaults (the pool's
  ``strategy_options`` override them);
* ``lesson``: its one-line lesson;
* ``model_rule``: the rule of :mod:`acceptlab.model.rules` that simulates it
  (``None`` when the model has none, and ``not_modelled`` says why).  The
  model's strategy table, :data:`acceptlab.model.rules.RULES`, is read from
  here.

Who reads it: the specs (known names and options), :mod:`acceptlab.linux.support`
and ``acceptlab doctor`` (can it run here?), :func:`acceptlab.analysis.expected_share`
(the prediction), the command line's choices, and the tables of ``README.md``
and ``docs/handout.md`` (:func:`markdown_table` writes them; a test checks them).

The record names its waiter class (``waiter``) rather than holding it: the
classes live in the server layer, above this one, and
:data:`acceptlab.server.strategies.STRATEGIES` maps each name to its class (a
test checks that the two agree).  Nothing here imports more than the standard
library; numpy is imported only to compute a binomial band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = ["StrategyRecord", "Requires", "Wakeups", "Prediction", "Model", "Turns", "FairDie", "Herd",
           "OneWorker", "RecentWaiters", "InBlocks", "ByCpu", "STRATEGY_RECORDS",
           "strategy_record", "expected_share", "markdown_table", "binomial_band"]

ALL_KINDS = ("thread", "process", "hybrid")


# -- predictions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """What a strategy predicts for each worker's count of accepted connections.

    * ``share``: each worker's expected fraction of the connections, or NaN
      when the strategy predicts no even share;
    * ``low``, ``high``: the band a worker's count is expected to fall in
      (inclusive), which a plot draws as a shaded band;
    * ``note``: the prediction in words, for a legend or a print;
    * ``kind``: which sort of prediction this is, so a plot can draw it:
      ``'exact'`` (taking turns: every count is ``low`` or ``high``),
      ``'binomial'`` (a fair die: 99 % of counts fall in the band),
      ``'racy'`` (a race, roughly even: the die's band is a guide, not a
      promise), ``'one-worker'`` (one worker takes most) or ``'uneven'``
      (uneven, in a way no per-worker count predicts).  For the last two the
      band is the whole range 0..connections.
    """

    share: float
    low: int
    high: int
    note: str
    kind: str


def binomial_band(n: int, p: float, coverage: float = 0.99) -> tuple[int, int]:
    """The central ``coverage`` interval of Binomial(n, p), from its exact probabilities.

    ``low`` is the smallest k with P(X <= k) >= (1 - coverage)/2 and ``high``
    the smallest k with P(X <= k) >= (1 + coverage)/2, so at least
    ``coverage`` of the probability lies in ``[low, high]``.  The
    probabilities are computed in logs so that n in the millions does not
    overflow.
    """
    import numpy as np

    if n == 0 or p <= 0:
        return 0, 0
    if p >= 1:
        return n, n
    # P(X = k+1) / P(X = k) = (n-k)/(k+1) · p/(1-p): start from P(X = 0) = (1-p)^n and
    # add up the logs of those ratios, all at once with cumsum.
    k = np.arange(n)
    steps = np.log(n - k) - np.log(k + 1) + math.log(p) - math.log1p(-p)
    log_pmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    cdf = np.cumsum(np.exp(log_pmf))
    tail = (1 - coverage) / 2
    low = int(np.searchsorted(cdf, tail))  # first k with cdf >= tail
    high = int(min(np.searchsorted(cdf, 1 - tail), n))
    return low, high


class Model:
    """How a strategy spreads connections over workers under light load, and its band.

    ``words`` names the model in a sentence ("taking turns"), ``kind`` is the
    :class:`Prediction` kind a plot draws.
    """

    words = ""
    kind = ""

    def predict(self, workers: int, connections: int,
                options: Mapping[str, float]) -> Prediction:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Turns(Model):
    """A FIFO of sleepers (or a dealer) serves the workers in turn: every count is C/N."""

    words, kind = "taking turns", "exact"

    def __init__(self, caveat: str = "") -> None:
        self.caveat = caveat

    def predict(self, workers, connections, options):
        low, left_over = divmod(connections, workers)
        high = low + (left_over > 0)  # some workers get one more when it does not divide
        note = f"taking turns: {low} each" if low == high else f"taking turns: {low}–{high} each"
        return Prediction(1 / workers, low, high, note + self.caveat, self.kind)


class FairDie(Model):
    """The kernel hashes each connection to a socket: each count is Binomial(C, 1/N)."""

    words, kind = "fair die", "binomial"

    def predict(self, workers, connections, options):
        low, high = binomial_band(connections, 1 / workers)
        return Prediction(1 / workers, low, high, f"fair die: 99 % of counts in {low}–{high}",
                          self.kind)


class Herd(Model):
    """Every idle worker wakes and races: roughly even, nothing guarantees it."""

    words, kind = "racy", "racy"

    def predict(self, workers, connections, options):
        low, high = binomial_band(connections, 1 / workers)
        return Prediction(1 / workers, low, high,
                          f"racy, roughly even (a fair die gives {low}–{high})", self.kind)


class OneWorker(Model):
    """The first registered idle waiter is woken every time: one worker takes most."""

    words, kind = "one worker takes most", "one-worker"

    def predict(self, workers, connections, options):
        return Prediction(float("nan"), 0, connections, self.words, self.kind)


class RecentWaiters(Model):
    """Sleepers woken last in, first out (and the level-triggered re-queue): uneven, recent win."""

    words, kind = "uneven, recent waiters win", "uneven"

    def predict(self, workers, connections, options):
        return Prediction(float("nan"), 0, connections, self.words, self.kind)


class InBlocks(Model):
    """One worker at a time takes ``every`` connections, then the next: blocks in turn."""

    words, kind = "blocks in turn", "exact"

    def predict(self, workers, connections, options):
        every = int(options["every"])
        blocks = [min(every, connections - start) for start in range(0, connections, every)]
        counts = [sum(blocks[b] for b in range(worker, len(blocks), workers))
                  for worker in range(workers)]
        return Prediction(1 / workers, min(counts), max(counts),
                          f"blocks of {every} in turn: {min(counts)}–{max(counts)} each", self.kind)


class ByCpu(Model):
    """The CPU the connection arrived on picks the socket: workers past the CPUs get none."""

    words, kind = "the client's CPU decides", "uneven"

    def predict(self, workers, connections, options):
        return Prediction(float("nan"), 0, connections,
                          "the client's CPU decides: workers past the CPUs get none", self.kind)


# -- requirements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requires:
    """What a strategy needs from the machine, as data; :mod:`acceptlab.linux.support` checks it.

    ``constants`` are dotted names the running Python must have
    (``'select.EPOLLEXCLUSIVE'``); ``probe`` names a feature of
    ``acceptlab doctor`` that is tried for real (a kernel may know a flag and
    ignore it); ``platform`` is a ``sys.platform`` prefix, ``kernel`` the
    oldest Linux release that behaves as the lesson says.
    """

    platform: str | None = None
    kernel: tuple[int, int] | None = None
    root: bool = False
    constants: tuple[str, ...] = ()
    probe: str | None = None

    def __str__(self) -> str:
        parts = [f"Linux ≥ {self.kernel[0]}.{self.kernel[1]}" if self.kernel else
                 (self.platform.capitalize() if self.platform else "")]
        parts += [f"`{name}`" for name in self.constants]
        parts += ["root"] if self.root else []
        return ", ".join(part for part in parts if part) or "any POSIX system"


_EPOLL = Requires(platform="linux", constants=("select.epoll",), probe="epoll")
_EXCLUSIVE = Requires(platform="linux", kernel=(4, 5), constants=("select.EPOLLEXCLUSIVE",),
                      probe="EPOLLEXCLUSIVE")
_POLL = Requires(constants=("select.poll",))
_REUSEPORT = Requires(platform="linux", kernel=(3, 9), constants=("socket.SO_REUSEPORT",),
                      probe="SO_REUSEPORT")
_PASS_FDS = Requires(constants=("socket.send_fds",))


@dataclass(frozen=True)
class Wakeups:
    """How many workers one connection wakes under light load, as a number and in words.

    ``count`` workers (1 for a wake-one queue, 2 for a lock and then
    ``accept()``), or, with ``herd``, every worker that was idle.  ``note``
    adds what the tables say beside the number (what EAGAIN shows, say).
    """

    count: float = 1.0
    herd: bool = False
    note: str = ""

    def per_connection(self, idle_workers: int) -> float:
        """The predicted wakeups per connection when ``idle_workers`` were waiting."""
        return float(idle_workers) if self.herd else self.count

    def __str__(self) -> str:
        number = "≈ idle workers" if self.herd else f"{self.count:g}"
        return f"{number}{self.note}"


_HERD = Wakeups(herd=True)


# -- the records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyRecord:
    """Everything the kit says about one strategy (see the module docstring)."""

    name: str
    waiter: str  # its class in acceptlab.server.strategies
    family: str  # 'kernel': a way to wait the kernel offers; 'fix': the ecosystem's answer
    waits: str  # how each worker waits
    mechanism: str  # what the kernel does about it
    source: str  # the docs/sources.md anchor
    origin: str
    prediction: Model
    wakeups: Wakeups  # wakeups per connection under light load
    lesson: str
    requires: Requires = Requires()
    kinds: tuple[str, ...] = ALL_KINDS
    kinds_why: str = ""  # why some kinds are missing
    options: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    model_rule: str | None = None  # acceptlab.model.rules: the mechanism that simulates it
    not_modelled: str = ""  # why the model has no rule for it (model_rule None)

    def __post_init__(self) -> None:
        if (self.model_rule is None) == (not self.not_modelled):
            raise ValueError(f"{self.name}: name a model_rule, or say in not_modelled why "
                             f"there is none (one of the two)")

    def predict(self, workers: int, connections: int,
                options: Mapping[str, float] | None = None) -> Prediction:
        """This strategy's prediction for ``connections`` over ``workers`` (see :class:`Model`)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if connections < 0:
            raise ValueError("connections cannot be negative")
        return self.prediction.predict(workers, connections, {**self.options, **(options or {})})


def _options(**defaults: float) -> Mapping[str, float]:
    return MappingProxyType(defaults)


_RECORDS = (
    StrategyRecord(
        "blocking", "Blocking", "kernel",
        waits="`accept()` on the shared socket",
        mechanism="exclusive wait, FIFO: the head of the queue of sleepers is woken",
        source="accept-wake-one", origin="the book's pre-forked server; Linux's accept()",
        prediction=Turns(), wakeups=Wakeups(1),
        lesson="the kernel queues sleeping acceptors and wakes the longest waiter: turns",
        model_rule="exclusive-fifo"),
    StrategyRecord(
        "timeout", "Timeout", "kernel",
        waits="`settimeout()`, then `accept()`",
        mechanism="CPython polls before accepting, so every idle worker wakes",
        source="cpython-sock-call", origin="any code that calls settimeout() on a listener",
        prediction=Herd(), wakeups=Wakeups(herd=True, note="; no EAGAIN reaches Python"),
        lesson="a timeout turns accept() into poll(): the herd comes back unseen",
        options=_options(accept_timeout=1.0),
        model_rule="poll-herd-in-c"),
    StrategyRecord(
        "poll", "Poll", "kernel",
        waits="`select.poll()`, then a non-blocking `accept()`",
        mechanism="non-exclusive waiters: a connection wakes them all",
        source="select-c", origin="select()/poll() servers (gunicorn's sync worker)",
        prediction=Herd(), wakeups=Wakeups(herd=True, note="; EAGAIN shows only some losers"),
        lesson="poll wakes every waiter: a thundering herd that EAGAIN counts understate",
        requires=_POLL,
        model_rule="poll-herd"),
    StrategyRecord(
        "epoll", "Epoll", "kernel",
        waits="one epoll per worker, no flag",
        mechanism="non-exclusive, like poll",
        source="epoll-ctl-man", origin="an event loop per worker (uvicorn, Node without cluster)",
        prediction=Herd(), wakeups=_HERD,
        lesson="epoll alone does not end the herd: every worker's epoll is woken",
        requires=_EPOLL,
        model_rule="epoll-herd"),
    StrategyRecord(
        "epoll-exclusive", "EpollExclusive", "kernel",
        waits="one epoll per worker, `EPOLLEXCLUSIVE`",
        mechanism="the first registered idle epoll is woken",
        source="eventpoll-c", origin="Linux 4.5's EPOLLEXCLUSIVE (nginx uses it)",
        prediction=OneWorker(), wakeups=Wakeups(1),
        lesson="one wakeup per connection, but always the same worker's: one takes nearly all",
        requires=_EXCLUSIVE,
        model_rule="first-registered"),
    StrategyRecord(
        "shared-epoll", "SharedEpoll", "kernel",
        waits="one epoll instance shared by every thread",
        mechanism="sleepers are queued at the head (LIFO); the level-triggered re-queue "
                  "wakes the next one too",
        source="eventpoll-c", origin="an event loop shared by threads (the kit's case)",
        prediction=RecentWaiters(), wakeups=Wakeups(2, note=", some EAGAIN"),
        lesson="the most recent waiter is woken first, and the re-queue wakes another: uneven",
        requires=_EPOLL, kinds=("thread",),
        kinds_why="the kit shares one epoll instance between threads (a forked child could "
                  "share it too: the kit's choice)",
        model_rule="shared-lifo"),
    StrategyRecord(
        "reuseport", "ReusePort", "kernel",
        waits="each worker binds its own socket, `SO_REUSEPORT`",
        mechanism="a hash of the connection's addresses picks the socket",
        source="reuseport-select", origin="SO_REUSEPORT, Linux 3.9 (nginx's reuseport)",
        prediction=FairDie(), wakeups=Wakeups(1),
        lesson="a hash deals connections like a die, whatever each worker's speed",
        requires=_REUSEPORT,
        model_rule="hashed"),
    StrategyRecord(
        "locked", "Locked", "kernel",
        waits="a lock (`flock`) around `accept()`",
        mechanism="only the lock holder waits in the kernel; since Linux 5.0 unlock wakes "
                  "one waiter of the lock (before, every one)",
        source="flock-tree", origin="Apache's AcceptMutex, uWSGI's thunder lock",
        prediction=Turns(" (if the lock wakes waiters in order)"),
        wakeups=Wakeups(2, note=": the lock, then `accept()`"),
        lesson="serialising accept() ends the herd at the price of a second wakeup",
        requires=Requires(constants=("fcntl.flock",)),
        model_rule="lock-fifo"),
    StrategyRecord(
        "reorder", "Reorder", "fix",
        waits="`EPOLLEXCLUSIVE`, re-registering every `every` accepts",
        mechanism="the re-added epoll goes to the back of the listener's queue",
        source="nginx-reorder", origin="nginx 1.21 (ngx_reorder_accept_events)",
        prediction=InBlocks(), wakeups=Wakeups(1),
        lesson="stepping back every 16 accepts turns one busy worker into blocks in turn",
        requires=_EXCLUSIVE, options=_options(every=16),
        model_rule="re-registering"),
    StrategyRecord(
        "busy-sleep", "BusySleep", "fix",
        waits="every waiter polls; a process with connections open sleeps first",
        mechanism="an idle process usually reaches `accept()` first",
        source="puma-2079", origin="Puma (wait_for_less_busy_worker, PR #2079)",
        prediction=Herd(), wakeups=_HERD,
        lesson="a busy process pauses before it accepts, so an idle one wins (kind='hybrid')",
        requires=_POLL, options=_options(pause=0.005),
        model_rule="counted-herd"),
    StrategyRecord(
        "exact", "Exact", "fix",
        waits="every waiter polls; only a process holding the fewest open connections accepts",
        mechanism="a lock decides; the others decline",
        source="envoy-exact-balance",
        origin="the kit's own: a lock plus a herd, aiming at the even open counts of Envoy's "
               "exact balance (Envoy itself accepts first and posts: see handoff-least-busy)",
        prediction=Herd(), wakeups=_HERD,
        lesson="even open counts per process, paid for with a herd and a lock",
        requires=_POLL, options=_options(decline_pause=0.0005),
        model_rule="locked-herd"),
    StrategyRecord(
        "handoff", "Handoff", "fix",
        waits="one acceptor deals each connection to the next worker (Unix socket)",
        mechanism="the dealer decides, not a race between sleepers",
        source="node-cluster", origin="Node's cluster (SCHED_RR)",
        prediction=Turns(), wakeups=Wakeups(1, note=", plus the acceptor's"),
        lesson="strict turns even back to back, for one more hop per connection",
        requires=_PASS_FDS,
        model_rule="dealer"),
    StrategyRecord(
        "handoff-least-busy", "HandoffLeastBusy", "fix",
        waits="one acceptor deals each connection to the least busy process",
        mechanism="the dealer counts open connections per process",
        source="envoy-exact-balance",
        origin="Envoy's exact balance (accept, then post to the least-loaded worker)",
        prediction=Turns(), wakeups=Wakeups(1, note=", plus the acceptor's"),
        lesson="dealing by open connections evens out long-lived connections",
        requires=_PASS_FDS,
        model_rule="least-busy-dealer"),
    StrategyRecord(
        "reuseport-cpu", "ReusePortCpu", "fix",
        waits="`SO_REUSEPORT` sockets and a BPF program: socket = CPU mod workers",
        mechanism="the program returns the socket's index instead of the hash",
        source="reuseport-bpf-cpu",
        origin="the kernel selftest reuseport_bpf_cpu.c (one socket per CPU); the mod is "
               "the kit's generalisation",
        prediction=ByCpu(), wakeups=Wakeups(1),
        lesson="steering by CPU keeps a connection where it arrived: locality, not balance",
        requires=Requires(platform="linux", kernel=(4, 5), constants=("socket.SO_REUSEPORT",),
                          probe="SO_ATTACH_REUSEPORT_CBPF"),
        not_modelled="the socket is chosen by the CPU the connection arrived on, which the "
                     "model does not simulate (on loopback, the CPU the client ran on)"),
    StrategyRecord(
        "reuseport-incoming-cpu", "ReusePortIncomingCpu", "fix",
        waits="`SO_REUSEPORT` sockets tagged `SO_INCOMING_CPU`",
        mechanism="the group prefers the socket tagged with the arriving CPU",
        source="so-incoming-cpu", origin="SO_INCOMING_CPU in a SO_REUSEPORT group, Linux 6.2",
        prediction=ByCpu(), wakeups=Wakeups(1),
        lesson="the same steering without BPF, from a socket option",
        requires=Requires(platform="linux", kernel=(6, 2), constants=("socket.SO_REUSEPORT",),
                          probe="SO_INCOMING_CPU"),
        not_modelled="the socket is chosen by the CPU the connection arrived on, which the "
                     "model does not simulate"),
)

STRATEGY_RECORDS: Mapping[str, StrategyRecord] = MappingProxyType(
    {record.name: record for record in _RECORDS})
"""Every strategy's record, by name, in the order the kit presents them."""


def strategy_record(name: str) -> StrategyRecord:
    """The record of strategy ``name``; a ``ValueError`` naming the choices if there is none."""
    try:
        return STRATEGY_RECORDS[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of "
                         f"{', '.join(STRATEGY_RECORDS)}") from None


def expected_share(strategy: str, workers: int, connections: int,
                   options: Mapping[str, float] | None = None) -> Prediction:
    """What ``strategy`` predicts for how ``connections`` spread over ``workers`` (light load).

    Under saturation every shared-queue strategy follows each worker's service
    rate instead.  An unknown strategy raises ``ValueError``.
    """
    record = STRATEGY_RECORDS.get(strategy)
    if record is None:
        raise ValueError(f"no prediction for strategy {strategy!r}; known: "
                         f"{', '.join(STRATEGY_RECORDS)}")
    return record.predict(workers, connections, options)


_HEADINGS = {
    "strategy": "strategy",
    "waits": "how each worker waits",
    "mechanism": "mechanism (source)",
    "prediction": "predicted split, light load",
    "wakeups": "wakeups per connection",
    "origin": "origin",
    "requires": "needs",
    "lesson": "its lesson",
}


def _cell(record: StrategyRecord, column: str, link: str) -> str:
    if column == "strategy":
        kinds = "" if record.kinds == ALL_KINDS else f" ({', '.join(record.kinds)} only)"
        return f"`{record.name}`{kinds}"
    if column == "mechanism":
        return f"{record.mechanism} ([source]({link}#{record.source}))"
    if column == "prediction":
        return record.prediction.words
    if column == "requires":
        return str(record.requires)
    return str(getattr(record, column))


def markdown_table(family: str | None = None,
                   columns: tuple[str, ...] = ("strategy", "waits", "mechanism", "prediction",
                                               "wakeups"),
                   *, link: str = "sources.md") -> str:
    """The strategies as a Markdown table, as ``README.md`` and ``docs/handout.md`` show them.

    ``tools/strategy_tables.py`` writes it into those files; a test checks they agree.

    Args:
        family: ``'kernel'`` or ``'fix'`` for one family, None for every strategy.
        columns: which facts, among ``strategy``, ``waits``, ``mechanism``,
            ``prediction``, ``wakeups``, ``origin``, ``requires`` and ``lesson``.
        link: the path of ``docs/sources.md`` as seen from the document.
    """
    lines = ["| " + " | ".join(_HEADINGS[column] for column in columns) + " |",
             "|" + "---|" * len(columns)]
    for record in STRATEGY_RECORDS.values():
        if family is None or record.family == family:
            lines.append("| " + " | ".join(_cell(record, column, link) for column in columns)
                         + " |")
    return "\n".join(lines)
