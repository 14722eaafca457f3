"""Who may take a connection: one small rule per way the kernel (or a dealer) hands them out.

Each rule answers four questions for the simulation (:mod:`acceptlab.model.engine`):

* ``arrived(sim, queue)``: a connection was just queued; whom does the
  kernel wake?  (``sim.wake(worker)`` wakes one; the woken worker *runs*
  a wake-up latency later and takes the connection if it is still there.)
* ``returned(sim, worker)``: a worker comes back to wait; does it see a
  connection already queued and take it without sleeping, or does it sleep,
  and where in the wait queue?
* ``found_nothing(sim, worker)``: a woken worker ran too late; does it go
  back to sleep inside the kernel (a wakeup without a return), or come back
  to Python with EAGAIN (a return)?
* ``accepted(sim, worker)``: anything that follows an accept (a lock
  released, a level-triggered event handed on, a re-registration).

Each class names the kernel source it follows (net/ipv4/inet_connection_sock.c,
fs/select.c, fs/eventpoll.c, fs/locks.c, net/core/sock_reuseport.c); what the
kernel leaves to the scheduler (who of a woken herd runs first, how often a returning
worker is late) comes from the calibration's runs of the rule's ``path``, or is a
documented assumption.  Which rule simulates which strategy is written once, in each
strategy's record (``model_rule``, :mod:`acceptlab.registry`); :data:`RULES` reads it.
"""

from __future__ import annotations

import bisect
import collections
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from ..registry import STRATEGY_RECORDS

if TYPE_CHECKING:
    from .engine import Simulation

__all__ = ["Rule", "ExclusiveFifo", "Herd", "PollHerd", "CountedHerd", "EpollHerd",
           "FirstRegistered", "ReRegistering", "SharedLifo", "Hashed", "LockFifo", "Dealer",
           "LeastBusyDealer", "RULES", "MECHANISMS", "NotModelled", "rule_for", "NOT_MODELLED"]


class NotModelled(ValueError):
    """The model has no rule for this strategy (or kind of worker); the message says why."""


class Rule:
    """The shared shape: one accept queue, and a worker sees it when it comes back.

    Class attributes parametrise each rule:

    * ``mechanism``: the rule's name (what a strategy's record names);
    * ``path``: the way to a connection whose calibration runs time it
      (:data:`acceptlab.model.pools.PATHS`: ``accept``, ``poll``...);
    * ``own_queues``: each worker has an accept queue of its own
      (``reuseport``'s sockets, a dealer's channels);
    * ``kinds``: the kinds of worker the kit runs this strategy with.

    A late returning worker (its CPU was taken when its client hung up) that
    the calibration saw take the next connection itself (late-win) is back
    before the sleeper woken for it runs: they waited for the same CPU, and it
    was first in line.  How often that happens is measured per ``path``.
    """

    mechanism = "rule"
    path = "accept"
    own_queues = False
    kinds: tuple[str, ...] = ("process", "thread")

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim

    def queue_of_new(self) -> int:
        """Which accept queue a new connection enters (0: the one shared queue)."""
        return 0

    def visible(self, worker: int) -> int:
        """The queue ``worker`` takes its connections from."""
        return worker if self.own_queues else 0

    def arrived(self, queue: int) -> None:
        raise NotImplementedError

    def returned(self, worker: int) -> None:
        """Back to wait: take a queued connection without sleeping, or sleep."""
        if self.sim.queued(self.visible(worker)):
            self.sim.take(worker, self.visible(worker))
        else:
            self.sleep(worker)

    def run(self, worker: int) -> None:
        """A woken worker runs: it takes the connection if it is still queued."""
        if self.sim.queued(self.visible(worker)):
            self.sim.take(worker, self.visible(worker))
        else:
            self.found_nothing(worker)

    def sleep(self, worker: int) -> None:
        raise NotImplementedError

    def found_nothing(self, worker: int) -> None:
        """Woken for nothing: back to sleep inside the kernel (the wakeup counted, no return)."""
        self.sleep(worker)

    def accepted(self, worker: int) -> None:
        """After ``worker`` accepted (nothing, for most rules)."""

    def finished(self, worker: int) -> None:
        """After ``worker``'s conversation ended (nothing, for most rules)."""


class ExclusiveFifo(Rule):
    """``blocking``: the sleepers queue FIFO and one connection wakes the head (exclusive wait).

    ``inet_csk_wait_for_connect`` sleeps with ``prepare_to_wait_exclusive``
    (the waiter joins the TAIL) and a connection wakes one waiter from the
    HEAD.  The wakeup removes the waiter from the queue; if it finds the
    connection gone (a returning worker took it first, without sleeping), it
    loops and joins the tail again: a wakeup, no return, and its turn lost.
    """

    mechanism = "exclusive-fifo"

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.sleepers: collections.deque[int] = collections.deque()

    def arrived(self, queue: int) -> None:
        if self.sleepers:
            self.sim.wake(self.sleepers.popleft())

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)
        self.sleepers.append(worker)


class Herd(Rule):
    """``poll``, ``epoll``, ``timeout``...: a connection wakes every idle waiter; one wins.

    Non-exclusive waits (``fs/select.c``'s ``__pollwait``, an epoll entry
    without EPOLLEXCLUSIVE) are all woken.  Which of them runs first is the
    scheduler's choice; the model draws the winner's rank (0 = it had waited
    longest) from the calibration's :class:`~acceptlab.model.calibration.HerdTable`
    of this rule's ``family``.  Each loser either comes back to Python with
    EAGAIN (probability ``p_eagain`` from the same table: it ran while the
    connection still looked readable) or goes back to sleep inside the
    kernel, where only the wakeup count sees it (``p_switch`` of the time: a
    loser that has not run by the next wake-up is woken for both at once).
    Waking each extra sleeper costs the connecting side ``herd_wake_us``.

    On a machine with few cores one worker is often the favourite for a whole
    run (its CPU is the free one when a connection comes): the simulated run
    picks one (``sim.favourite``), and when it is among the woken it wins as
    often as the table's ``favoured`` says, before any rank is drawn.
    """

    mechanism = "herd"
    family = "poll"
    returns_eagain = True  # a loser that finds nothing comes back to Python (False: C retries)

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.sleepers: list[tuple[float, int]] = []  # (place in the wait queue, worker)
        self.table = sim.herd_table(self.family)

    def arrived(self, queue: int) -> None:
        if not self.sleepers:
            return
        place = self._favourite_place()
        if place is None:
            place = self.sim.place(self.sim.draw_rank(self.table), len(self.sleepers))
        winner = self.sleepers.pop(place)[1]
        losers = [worker for _, worker in self.sleepers]
        self.sim.wake(winner)
        self.sim.herd_woke(len(losers) + 1, self.table.woken)
        back = self.sim.eagain_losers(losers, self.table.p_eagain)
        for loser in back:  # it ran: a switch, and (unless C retries) a return to Python
            self.lost_race(loser)
            if self.returns_eagain:
                self._remove(loser)
                self.sim.eagain(loser)
        # the others' switches: as often as the calibration's losers switched (one not yet
        # run when the next wake-up comes pays once for both)
        rest = 1 - self.table.p_eagain
        p_switch = min(1.0, max(0.0, self.table.p_switch - self.table.p_eagain) / rest) \
            if rest > 0 else 1.0
        for loser in losers:
            if loser not in back and self.sim.coin(p_switch):
                self.lost_race(loser)

    def _favourite_place(self) -> int | None:
        """The favourite's place among the sleepers, when it is there and wins this race."""
        favoured = self.table.favoured
        if favoured <= 0 or not self.sim.coin(favoured):
            return None
        for index, (_, who) in enumerate(self.sleepers):
            if who == self.sim.favourite:
                return index
        return None

    def lost_race(self, loser: int) -> None:
        """The switches a loser makes for one race it lost: one, the wakeup."""
        self.sim.count_wakeup(loser)

    def _remove(self, worker: int) -> None:
        for index, (_, who) in enumerate(self.sleepers):
            if who == worker:
                del self.sleepers[index]
                return

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)
        bisect.insort(self.sleepers, (self.sim.row_wait(worker), worker))

    def found_nothing(self, worker: int) -> None:
        if self.returns_eagain and self.sim.coin(self.table.p_eagain):
            self.sim.eagain(worker, now=True)
        else:
            self.sleep(worker)


class PollHerd(Herd):
    """``poll`` (``timeout``: :class:`PollHerdInC`; ``busy-sleep``: :class:`CountedHerd`;
    ``exact``: :class:`LockedHerd`)."""

    mechanism = "poll-herd"
    path = family = "poll"


class PollHerdInC(PollHerd):
    """``timeout``: the herd of ``poll``, whose losers never come back to Python.

    With a timeout, CPython's ``accept()`` polls, then accepts, and on EAGAIN polls again,
    all inside C (``sock_call_ex``): a loser's wakeup is a switch the event log counts, never
    a return.  So this is :class:`PollHerd` with every loser going back to sleep.
    """

    mechanism = "poll-herd-in-c"
    returns_eagain = False


class CountedHerd(PollHerd):
    """``busy-sleep``: the herd of ``poll``, whose winner counts its connection under a lock.

    A waiting process of one thread holds no open connection, so Puma's pause
    never fires (``kind='hybrid'`` is not modelled); the count around each
    conversation changes the race's timing only.  Who wins, how strongly one
    worker is favoured, how many losers see EAGAIN: a calibration run of
    ``busy-sleep`` itself measures them (family ``busy-sleep``).
    """

    mechanism = "counted-herd"
    family = "busy-sleep"


class LockedHerd(PollHerd):
    """``exact``: the herd of ``poll``, whose race is decided under a lock.

    Every woken worker takes a lock shared by the processes before it may
    ``accept()``: the one that gets it first wins.  Two things differ from a
    plain herd, and both are measured by a calibration run of ``exact`` itself
    (family ``exact``): the winner's way from ``poll()`` to ``accept()`` is
    longer (the lock, the shared counts), so more losers find the connection
    still there and come back to Python with EAGAIN (``p_eagain``); and a loser
    that reaches the lock while another holds it sleeps on it too.  The table
    counts those extra switches per race lost (``p_switch`` above 1), not who
    made them, so each lost race gets one more switch as often as that.  The
    declining of a busy process never fires here, as with :class:`PollHerd`.
    """

    mechanism = "locked-herd"
    family = "exact"

    def lost_race(self, loser: int) -> None:
        self.sim.count_wakeup(loser)
        if self.sim.coin(min(1.0, max(0.0, self.table.p_switch - 1.0))):
            self.sim.count_wakeup(loser)  # it slept on the lock as well


class EpollHerd(Herd):
    """``epoll``: one epoll per worker, registered once without EPOLLEXCLUSIVE: a herd too.

    Every idle worker's epoll is woken, as ``poll``'s waiters are; who runs
    first is drawn from the calibration's ``epoll`` runs, by how long each had
    waited (the order ``bench_model`` checks as ``mean_rank``).
    """

    mechanism = "epoll-herd"
    path = family = "epoll"


class FirstRegistered(Rule):
    """``epoll-exclusive``: the kernel wakes the first idle epoll in registration order.

    ``ep_poll_callback`` walks the listener's wait queue (epolls in registration order, each
    worker's once at start-up).  An EPOLLEXCLUSIVE entry whose epoll has no sleeper (a busy
    worker) gets the event on its ready list and the walk goes on; the first with a sleeper
    is woken and the walk stops.  A busy worker passed over sees the event in its next
    ``epoll_wait`` (level-triggered) and takes the connection if it is still queued.  How
    late (and how often still first) the returning worker is, and how often the sleeper woken
    then sees EAGAIN, come from the calibration's ``epoll-exclusive`` runs (path ``exclusive``).
    """

    mechanism = "first-registered"
    path = "exclusive"

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.order = list(range(sim.workers))  # registration order: slot order at start-up
        self.marked = [False] * sim.workers
        self.table = sim.herd_table("epoll")  # how often a woken loser sees EAGAIN

    def arrived(self, queue: int) -> None:
        for worker in self.order:
            if self.sim.is_asleep(worker):
                self.sim.wake(worker)
                return
            self.marked[worker] = True  # busy (or woken already): the event waits on its list

    def returned(self, worker: int) -> None:
        if self.marked[worker]:
            self.marked[worker] = False
            if self.sim.queued(0):
                self.sim.take(worker, 0)
                return
        self.sleep(worker)

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)

    def found_nothing(self, worker: int) -> None:
        """Woken, but the returning worker took it: EAGAIN as often per late-win as the
        calibration's runs saw (where they did not say, as often as an epoll herd's losers)."""
        pool = self.sim.times[self.sim.regime].pool
        share = pool.eagain_per_win if pool.path == self.path else None
        if self.sim.coin(self.table.p_eagain if share is None else share):
            return self.sim.eagain(worker, now=True)
        self.sleep(worker)


class ReRegistering(FirstRegistered):
    """``reorder`` (nginx 1.21.x): EPOLLEXCLUSIVE, but every 16 accepts the worker re-registers.

    Deleting and adding the listener again puts the worker's entry at the TAIL of the wait
    queue, so the next worker in line takes over.  The new registration polls the socket
    once: a connection queued then is on its ready list.
    """

    mechanism = "re-registering"
    every = int(STRATEGY_RECORDS["reorder"].options["every"])  # nginx's 16 (its record's)

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.accepts = [0] * sim.workers

    def accepted(self, worker: int) -> None:
        self.accepts[worker] += 1
        if self.accepts[worker] % self.every == 0:
            self.order.remove(worker)
            self.order.append(worker)
            self.marked[worker] = self.sim.queued(0) > 0


class SharedLifo(Rule):
    """``shared-epoll`` (threads): one epoll; its sleepers queue LIFO; the event is handed on.

    ``ep_poll`` adds each sleeper with ``__add_wait_queue_exclusive``, at the
    HEAD: the thread that went to sleep last is woken first.  The listener is
    level-triggered, so after a thread takes the event the kernel puts it
    back on the ready list and wakes the next sleeper (``ep_done_scan``).
    That one races the taker's ``accept()``: it comes back with EAGAIN (and
    its return hands the event on once more, to a sleeper who finds nothing)
    or it finds nothing itself and sleeps again at the head.

    Two things the kernel leaves to the scheduler come from the calibration's
    ``shared-epoll`` runs (:class:`~acceptlab.model.pools.HerdTable` ``shared``):
    which sleeper takes a new connection (the most recent, rank 1, unless a
    thread the hand-on woke is still running and gets there first: the
    re-queue race) and how often a hand-on comes back with EAGAIN.
    """

    mechanism = "shared-lifo"
    path = "shared"
    kinds = ("thread",)

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.sleepers: list[int] = []  # a stack: the last to sleep is woken first
        self.table = sim.herd_table("shared")

    def arrived(self, queue: int) -> None:
        if self.sleepers:
            rank = self.sim.draw_rank(self.table)  # 1: the most recent sleeper
            self.sim.wake(self.sleepers.pop(self.sim.place(rank, len(self.sleepers))))

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)
        self.sleepers.append(worker)

    def accepted(self, worker: int) -> None:
        if not self.sleepers:
            return
        next_in_line = self.sleepers.pop()
        self.sim.count_wakeup(next_in_line)
        if self.sim.coin(self.table.p_eagain):
            self.sim.eagain(next_in_line)
            if self.sleepers:  # its return hands the event on once more, to no avail
                self.sim.count_wakeup(self.sleepers[-1])
        else:
            self.sleepers.append(next_in_line)


class Hashed(Rule):
    """``reuseport``: every worker its own socket; a hash of the client's port picks one.

    ``reuseport_select_sock`` picks ``hash % sockets``; the hash of a new
    ephemeral port is as good as a fair die, so the model picks uniformly.
    No worker can take another's connection: a busy worker's queue waits for it.
    """

    mechanism = "hashed"
    own_queues = True

    def queue_of_new(self) -> int:
        return self.sim.pick_uniform(self.sim.workers)

    def arrived(self, queue: int) -> None:
        if self.sim.is_asleep(queue):
            self.sim.wake(queue)

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)


class LockFifo(Rule):
    """``locked``: ``flock`` around ``accept()``; only the holder waits in the accept queue.

    Since Linux 5.0 an unlock wakes the next waiter in order (a FIFO: turns
    hold even without a gap), at two wakeups per connection: the holder in
    ``accept()``, the next waiter by the unlock.  The woken waiter must take
    the lock when it runs; a worker calling ``flock`` first takes it (barges).
    The woken one blocks again, still first, and wakes those behind it, who
    block again in order (``__locks_insert_block``): a barge costs every
    waiter a wakeup, and no return.  docs/sources.md, "flock-tree".
    """

    mechanism = "lock-fifo"
    path = "lock"

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.holder: int | None = None
        self.holder_asleep = False
        self.waiting: collections.deque[int] = collections.deque()

    def arrived(self, queue: int) -> None:
        if self.holder is not None and self.holder_asleep:
            self.holder_asleep = False
            self.sim.wake(self.holder)

    def returned(self, worker: int) -> None:
        if self.holder is None:
            self._hold(worker)
        else:
            self.sim.asleep(worker)
            self.waiting.append(worker)

    def _hold(self, worker: int) -> None:
        self.holder = worker
        if self.sim.queued(0):
            self.sim.take(worker, 0)
        else:
            self.holder_asleep = True
            self.sim.asleep(worker)

    def run(self, worker: int) -> None:
        if worker != self.holder:  # woken by the unlock: the lock is its if still free
            if self.holder is None:
                self._hold(worker)
            else:  # someone barged in: block again, first in line; those behind wake too
                self.sim.asleep(worker)
                for behind in self.waiting:
                    self.sim.count_wakeup(behind)
                self.waiting.appendleft(worker)
        elif self.sim.queued(0):
            self.sim.take(worker, 0)
        else:
            self.holder_asleep = True
            self.sim.asleep(worker)

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)

    def accepted(self, worker: int) -> None:
        self.holder, self.holder_asleep = None, False
        if self.waiting:  # a plain wake-up on a busy machine, as accept()'s back to back
            self.sim.wake(self.waiting.popleft(), after_arrival=False)


class Dealer(Rule):
    """``handoff`` (Node's SCHED_RR): one acceptor takes every connection and deals it in turn.

    The dealer is a thread of the pool's process (which is the client's
    process in a run): a connection wakes it, it accepts and sends the
    descriptor down worker ``dealt % workers``'s channel, which wakes that
    worker if it sleeps.  The turns are the dealer's, so no race can break
    them.  The hop's time is in the calibration's ``handoff`` runs (their
    wake-up is the worker's, after the dealer's); under a concurrent load the
    dealer also waits for its turn on the client's GIL, ``DEAL_US`` of it per
    connection (an estimate: ``bench_fixes`` measured the hop's whole CPU
    cost at about 17 µs).
    """

    mechanism = "dealer"
    path = "dealer"
    own_queues = True
    DEAL_US = 15.0

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.dealt = 0
        self.open = [0] * sim.workers

    def queue_of_new(self) -> int:
        return self.sim.workers  # the listener: the queue past the workers' channels

    def visible(self, worker: int) -> int:
        return worker

    def arrived(self, queue: int) -> None:
        if queue != self.sim.workers:  # a channel got a descriptor
            if self.sim.is_asleep(queue):
                self.sim.wake(queue)
            return
        if self.sim.client_gil:  # the dealer's turn on the GIL (the client's process), booked now
            wait = self.sim.gil.hold(self.sim.now, self.DEAL_US)
            self.sim.later(self.sim.now + wait + self.DEAL_US, self.deal)
        else:
            self.deal()

    def deal(self) -> None:
        if not self.sim.queued(self.sim.workers):
            return
        target = self.target()
        self.dealt += 1
        self.open[target] += 1
        self.sim.move(self.sim.workers, target)

    def target(self) -> int:
        return self.dealt % self.sim.workers

    def sleep(self, worker: int) -> None:
        self.sim.asleep(worker)

    def finished(self, worker: int) -> None:
        self.open[worker] -= 1


class LeastBusyDealer(Dealer):
    """``handoff-least-busy``: the dealer picks the process with the fewest open connections.

    Ties go to the next in turn, so with every worker idle it deals in turns.
    """

    mechanism = "least-busy-dealer"

    def target(self) -> int:
        workers = self.sim.workers
        turn = self.dealt % workers
        order = [(turn + k) % workers for k in range(workers)]
        return min(order, key=lambda worker: self.open[worker])


MECHANISMS: dict[str, type[Rule]] = {rule.mechanism: rule for rule in (
    ExclusiveFifo, PollHerd, PollHerdInC, CountedHerd, LockedHerd, EpollHerd, FirstRegistered,
    ReRegistering, SharedLifo, Hashed, LockFifo, Dealer, LeastBusyDealer)}
"""Every rule of the model, by its mechanism's name."""

RULES: Mapping[str, str | None] = MappingProxyType(
    {name: record.model_rule for name, record in STRATEGY_RECORDS.items()})
"""Each strategy of the kit and the mechanism (a key of :data:`MECHANISMS`) that models it,
read from the strategy's record (``StrategyRecord.model_rule``, :mod:`acceptlab.registry`):
the one place that says which rule simulates which strategy.  None: not modelled."""

NOT_MODELLED: Mapping[str, str] = MappingProxyType(
    {name: record.not_modelled for name, record in STRATEGY_RECORDS.items()
     if record.model_rule is None})
"""Strategies the model gives no prediction for, and why (from their records)."""


def rule_for(strategy: str, kind: str = "process") -> type[Rule]:
    """The rule class that models ``strategy`` for ``kind`` workers, or :class:`NotModelled`."""
    if strategy not in RULES:
        raise NotModelled(f"unknown strategy {strategy!r}; known: {', '.join(RULES)}")
    mechanism = RULES[strategy]
    if mechanism is None:
        raise NotModelled(f"{strategy} is not modelled: {NOT_MODELLED[strategy]}")
    rule = MECHANISMS[mechanism]
    if kind not in rule.kinds:
        raise NotModelled(f"{strategy} runs with {' or '.join(rule.kinds)} workers, not {kind}")
    return rule
