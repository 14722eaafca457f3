"""The times one simulated run draws: one calibration pool's samples, a batch at a time.

A simulated run picks one live run's :class:`~acceptlab.model.pools.Pool` per
regime (so its times all come from one state of the machine) and draws from
its samples with replacement.  Two things are pooled over every run of the
regime instead, because one run rarely sees them:

* a **stall** between paced connections (``idle``: the worker that served a
  connection is not back in its wait when the next one arrives, 1 ms later):
  its probability and its lengths come from all the idle runs together, so a
  prediction of exact turns keeps the honest tail one stall in a few hundred
  connections gives it;
* a connection's **stall** (it took over :data:`~acceptlab.model.pools.STALL_FACTOR`
  times its run's median: another program held up the client or the worker):
  the connections are drawn from the others, and a stall is added as often
  as in one calibration run, any run, with a length from all of them;
* the machine's **speed**: a simulated run takes the shape of its connect
  and talk times from one pool and their speed from any sequential pool of
  the calibration (:attr:`~acceptlab.model.pools.Calibration.all_speeds`):
  the machine's state moves, and the run to predict may come at another
  moment than any one calibration run;
* the **race**'s probabilities (the returning worker late, then winning or losing): a
  calibration counts them in a few dozen pairs of connections per run, so each simulated
  run draws them from what that count can tell (:func:`_uncertain`);
* a closed loop's **unevenness**: its conversations are drawn out (or in) as much as one
  of the pool's talks was against their median (``stretch``): eight processes on two cores
  take turns in an order the model does not simulate, and the calibration's closed loop
  measured what it does to a conversation;
* a sleep's **overshoot**: the kernel's timer slack (``prctl(2)``: a timer may
  fire that much late, so that wake-ups can be batched; 50 µs by default)
  plus the wake-up latency of a sleeper on an idle CPU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .pools import Calibration, HerdTable, Pool

__all__ = ["Times", "HerdDraw"]


class _Draw:
    """Values drawn with replacement from one set of samples, a batch at a time (fast)."""

    def __init__(self, values, rng: np.random.Generator, fallback=(0.0,)) -> None:
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        self.values = values if len(values) else np.asarray(fallback, dtype=float)
        self.rng = rng
        self.batch: list[float] = []

    def __call__(self) -> float:
        if not self.batch:
            self.batch = self.values[self.rng.integers(0, len(self.values), 512)].tolist()
        return self.batch.pop()


class Times:
    """The draws of one pool (see the module docstring); ``of()`` picks the pool."""

    def __init__(self, pool: Pool, rng: np.random.Generator, *,
                 stall: tuple[float, float, tuple, tuple, tuple] | None = None,
                 stalls: tuple[float, tuple] = (0.0, ()), speed: float = 1.0) -> None:
        self.pool, self.rng = pool, rng
        self.speed = speed
        body = np.flatnonzero(~pool.stalled)
        self.body = body if len(body) else np.arange(len(pool.connect))
        self.p_stall = stalls[0]
        self.stall_length = _Draw(stalls[1], rng, (0.0,))
        self.regime, self.lead, self.stray = pool.regime, pool.lead, pool.stray
        self.connects = np.asarray(pool.connect, dtype=float)
        self.talks = np.asarray(pool.talk, dtype=float)
        self.wokes = np.asarray(pool.woke, dtype=float)
        self.wake = _Draw(self.wokes, rng)
        # A conversation's length over the pool's median: how uneven the load made them
        median_talk = np.nanmedian(self.talks) if np.isfinite(self.talks).any() else 0.0
        self.stretch = _Draw(self.talks / median_talk if median_talk > 0 else (1.0,), rng, (1.0,))
        self.lag_prompt = _Draw(pool.lag_prompt, rng, pool.lag_late or (0.0,))
        self.ret = _Draw(pool.ret, rng)
        self.enter = _Draw(pool.enter, rng, (0.0,))
        self.pause = _Draw(pool.pause, rng)
        if stall is None:
            stall = (pool.p_late_win, pool.p_late_lose, pool.off_win, pool.off_lose,
                     pool.lag_late, pool.pairs)
        p_late_win, p_late_lose, off_win, off_lose, lag_late, pairs = stall
        self.p_late_win, p_late_lose = _uncertain(p_late_win, p_late_lose, pairs, rng)
        self.p_late = self.p_late_win + p_late_lose
        self.off_win = _Draw(off_win, rng, (0.0,))
        self.off_lose = _Draw(off_lose, rng, (0.0,))
        self.lag_late = _Draw(lag_late, rng, pool.lag_prompt or (0.0,))

    @classmethod
    def of(cls, calibration: Calibration, path: str, kind: str, regime: str,
           rng: np.random.Generator) -> "Times":
        """The times of one pool of ``path``/``kind``/``regime``, picked at random."""
        pools = calibration.pools_for(path, kind, regime)
        pool = pools[int(rng.integers(len(pools)))]
        rates, lengths = calibration.stalls
        stalls = (float(rates[int(rng.integers(len(rates)))]) if rates else 0.0, lengths)
        speed = 1.0
        if id(pool) in calibration.speeds:  # this pool's times at another state's speed
            speeds = calibration.all_speeds
            speed = speeds[int(rng.integers(len(speeds)))] / calibration.speeds[id(pool)]
        return cls(pool, rng, stall=_pooled_stall(pools) if regime == "idle" else None,
                   stalls=stalls, speed=speed)

    def profile(self) -> int:
        """A live connection's index (not a stalled one): its connect, talk and wake-up go
        together."""
        return int(self.body[int(self.rng.integers(len(self.body)))])

    def stall(self) -> float:
        """A stall's length, as often as this run's machine stalls (else 0), µs."""
        return self.stall_length() if self.rng.random() < self.p_stall else 0.0

    def connect(self, profile: int) -> float:
        return float(self.connects[profile]) * self.speed

    def talk(self, profile: int) -> float:
        return float(self.talks[profile]) * self.speed

    def woke(self, profile: int) -> float:
        return float(self.wokes[profile])

    def connect_share(self) -> float:
        """The client's connect as a share of connect and talk (medians)."""
        connect, talk = np.nanmedian(self.connects), np.nanmedian(self.talks)
        return float(connect / (connect + talk)) if connect + talk > 0 else 0.3

    def sleep_overshoot(self, timer_slack_us: float) -> Callable[[], float]:
        """What a ``sleep`` adds to its length: the timer slack, then a wake-up from idle."""
        return lambda: timer_slack_us + max(0.0, self.lead + self.wake())


def _pooled_stall(pools: tuple[Pool, ...]) -> tuple[float, float, tuple, tuple, tuple, int]:
    """The race's probabilities and lengths over every run of a regime, weighted by its pairs
    (and how many pairs that was)."""
    pairs = np.asarray([max(1, pool.pairs) for pool in pools], dtype=float)
    win = float(np.dot(pairs, [pool.p_late_win for pool in pools]) / pairs.sum())
    lose = float(np.dot(pairs, [pool.p_late_lose for pool in pools]) / pairs.sum())
    joined = [tuple(v for pool in pools for v in getattr(pool, name))
              for name in ("off_win", "off_lose", "lag_late")]
    return (win, lose, *joined, sum(pool.pairs for pool in pools))


def _uncertain(p_win: float, p_lose: float, pairs: int,
               rng: np.random.Generator) -> tuple[float, float]:
    """The race's two probabilities for one simulated run, drawn from what ``pairs`` pairs of
    connections can tell about them.

    A calibration counts how often the returning worker was late (and then won or lost) in
    a few hundred pairs of connections; a count of 0 in 200 does not mean "never", only
    "rarely enough that 200 pairs missed it".  So each simulated run draws the two
    probabilities from their posterior, a Dirichlet over (late-win, late-lose, on time) with
    Jeffreys' prior (half a count each), and the band spans what the calibration's size
    leaves open.  Pools without a count of pairs (hand-made ones) keep their values.
    """
    if pairs <= 0:
        return p_win, p_lose
    wins, losses = p_win * pairs, p_lose * pairs
    draw = rng.dirichlet((wins + 0.5, losses + 0.5, max(0.0, pairs - wins - losses) + 0.5))
    return float(draw[0]), float(draw[1])


class HerdDraw:
    """A herd's table for the arrival being handled: the busy or the idle run's (``regime()``
    says the arrival's regime: an idle or open loop's arrival finds idle CPUs).

    A plain herd's EAGAIN share comes from any plain herd run of the regime
    (:data:`~acceptlab.model.pools.PLAIN_HERDS`); the other families' from their own.
    """

    def __init__(self, tables: dict[str, HerdTable], regime: Callable[[], str],
                 eagain: dict[str, float] | None = None) -> None:
        self.tables, self.regime = tables, regime
        self.arrays = {name: np.asarray(t.ranks, dtype=float) for name, t in tables.items()}
        self.eagain = eagain or {name: t.p_eagain for name, t in tables.items()}

    def _table(self) -> str:
        return "idle" if self.regime() in ("idle", "open") else "busy"

    @property
    def ranks(self) -> np.ndarray:
        return self.arrays[self._table()]

    @property
    def p_eagain(self) -> float:
        return self.eagain[self._table()]

    @property
    def p_switch(self) -> float:
        return self.tables[self._table()].p_switch

    @property
    def woken(self) -> float:
        return self.tables[self._table()].woken

    @property
    def favoured(self) -> float:
        return self.tables[self._table()].favoured
