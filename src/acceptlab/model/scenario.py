"""What to simulate: a run of the kit as ``acceptlab run`` takes it, checked once.

A :class:`Scenario` is the pool, the load and the work of one run; the
model's engine (:mod:`acceptlab.model.engine`) simulates it, and
:func:`acceptlab.model.predict` builds one from its keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..server.work import Work, parse_work
from .rules import NotModelled, rule_for

__all__ = ["Scenario", "QUESTIONS"]

QUESTIONS = {"zen": 3, "lancelot": 3}
"""Requests per connection of the protocols the model covers (their conversations are alike;
the calibration holds ``zen``'s).  ``http`` closes from the server's side after one reply,
a different race the calibration does not measure."""


@dataclass(frozen=True)
class Scenario:
    """What to simulate: the pool, the load and the work, as ``acceptlab run`` takes them.

    Args:
        strategy: a strategy of :data:`acceptlab.model.rules.RULES`.
        workers: worker slots.
        connections: connections the clients make.
        gap: seconds each client pauses between connections.
        concurrency: closed-loop clients (1: sequential).
        rate: open loop: Poisson arrivals per second (instead of a closed loop).
        work: ``'none'``, ``'sleep:MS'``, ``'spin:MS'``, or one per worker
            (``work[slot % len(work)]``, as ``WorkerPool`` does).
        kind: ``'process'`` or ``'thread'``.
        protocol: ``'zen'`` or ``'lancelot'``.
        remote: the clients are other machines (a load generator elsewhere), not
            the kit's client threads: they take no turns on this process's GIL.
    """

    strategy: str
    workers: int
    connections: int
    gap: float = 0.0
    concurrency: int = 1
    rate: float | None = None
    work: tuple[str, ...] = ("none",)
    kind: str = "process"
    protocol: str = "zen"
    remote: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.work, str):
            object.__setattr__(self, "work", (self.work,))
        object.__setattr__(self, "work", tuple(str(parse_work(w)) for w in self.work))
        if self.workers < 1 or self.connections < 1 or self.concurrency < 1 or self.gap < 0 \
                or (self.rate is not None and self.rate <= 0):
            raise ValueError("a scenario needs workers >= 1, connections >= 1, concurrency >= 1, "
                             "gap >= 0 and, if given, rate > 0")
        if self.kind not in ("process", "thread"):
            raise NotModelled(f"kind {self.kind!r} is not modelled (process and thread are)")
        if self.protocol not in QUESTIONS:
            raise NotModelled(f"protocol {self.protocol!r} is not modelled ({QUESTIONS.__doc__ or ''}"
                              f"the model covers {', '.join(QUESTIONS)})")
        rule_for(self.strategy, self.kind)  # raises NotModelled when there is no rule

    @property
    def contended(self) -> bool:
        """Several connections at once (a closed loop of clients, or an open loop)."""
        return self.concurrency > 1 or self.rate is not None

    def work_of(self, slot: int) -> Work:
        return parse_work(self.work[slot % len(self.work)])
