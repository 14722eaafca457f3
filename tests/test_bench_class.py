"""The class benchmark's plumbing (bench/bench_class.py): how verdicts are judged and compared.

The class itself runs only in ``python -m bench.run_all --only class``; the hub it uses is
tested in tests/test_hub.py.
"""

from __future__ import annotations

from bench import bench_class, run_all
from bench.bench_class import agreement, judge, judgements
from bench.hub import LessonResult


def a_run(strategy: str, name: str = "light", **figures) -> dict:
    return {"name": name, "strategy": strategy, "rr_score": None, "busiest_share": None,
            "wakeups_per_accept": None, **figures}


def test_each_strategy_is_judged_on_its_lesson_s_claims_only():
    assert judge(a_run("blocking", rr_score=0.97, busiest_share=0.25, wakeups_per_accept=1.0)) \
        == {"rr": "held", "wakeups": "one"}
    assert judge(a_run("blocking", rr_score=0.6)) == {"rr": "blurred"}
    assert judge(a_run("epoll-exclusive", busiest_share=0.99, wakeups_per_accept=1.0)) \
        == {"busiest": "one took most", "wakeups": "one"}
    assert judge(a_run("poll", rr_score=0.3, busiest_share=0.3, wakeups_per_accept=3.6)) \
        == {"wakeups": "herd"}
    assert judge(a_run("poll", wakeups_per_accept=float("nan"))) == {}  # not counted here
    assert judge(a_run("reuseport-cpu", wakeups_per_accept=1.0)) == {}  # no claim to judge


def lesson(student: str, *runs: dict) -> LessonResult:
    return LessonResult(student, "02_lesson", 1.0, probe={"runs": list(runs)})


def test_agreement_counts_each_student_s_verdict_against_the_quiet_run():
    quiet = judgements([lesson("alone", a_run("blocking", rr_score=1.0),
                               a_run("blocking", "burst", rr_score=0.6))])
    crowd = judgements([
        lesson("a", a_run("blocking", rr_score=0.95), a_run("blocking", "burst", rr_score=0.5)),
        lesson("b", a_run("blocking", rr_score=0.7), a_run("blocking", "burst", rr_score=0.92)),
        lesson("c", a_run("blocking", "only in the crowd", rr_score=1.0)),
    ])
    # light: held, blurred against held; burst: blurred, held against blurred; the third
    # student's run has no quiet counterpart and is not compared
    assert agreement(quiet, crowd, "rr") == (2, 4)
    assert agreement(quiet, crowd, "wakeups") == (0, 0)


def test_the_class_is_asked_for_by_name_not_in_the_default_bench():
    assert "class" in run_all.STEPS and "class" not in run_all.DEFAULT
    assert run_all.NEEDS["class"] == ()
    assert bench_class.STUDENTS == (1, 4, 8, 16)
    assert bench_class.LESSONS == ("02", "05", "06")
