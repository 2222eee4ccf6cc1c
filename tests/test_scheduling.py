"""SEED's FCFS rounds with fake models that sleep (sleep releases the GIL, as torch kernels do):
concurrency, first-come-first-serve order, once per round and drafting ahead, read off the
trace."""

import threading
import time

import pytest

from seedtree.scheduling.fcfs import FCFSRounds
from seedtree.scheduling.trace import Trace, save_gantt


class SleepyWork:
    """Branch i needs `rounds[i]` verifications; drafting takes draft_s[i], verifying verify_s."""

    def __init__(self, rounds, draft_s, verify_s=0.03, fail_on=None):
        self.left = list(rounds)
        self.draft_s, self.verify_s = draft_s, verify_s
        self.fail_on = fail_on
        self.errors = {}
        self.verified = []  # branch ids in the order verified
        self.drafts = [0] * len(rounds)
        self.active_verifies = 0
        self.lock = threading.Lock()

    def draft(self, i):
        if i == self.fail_on:
            raise RuntimeError(f"draft of branch {i} broke")
        assert self.drafts[i] == len([v for v in self.verified if v == i])  # one draft per verify
        time.sleep(self.draft_s[i])
        self.drafts[i] += 1

    def verify(self, i):
        with self.lock:
            self.active_verifies += 1
            assert self.active_verifies == 1  # ONE verifier
        time.sleep(self.verify_s)
        with self.lock:
            self.active_verifies -= 1
        self.verified.append(i)
        self.left[i] -= 1

    def done(self, i):
        return self.left[i] <= 0 or i in self.errors

    def fail(self, i, error):
        self.errors[i] = error


def run(work, n, workers=8):
    """Rounds until every branch is done, as the step engine runs them (one per step)."""
    trace, rounds = Trace(method="fake"), FCFSRounds(work, workers)
    active, number = list(range(n)), 0
    while active:
        rounds.round(active, number, trace)
        active, number = [b for b in active if not work.done(b)], number + 1
    return trace


def test_drafting_overlaps_verification_of_another_branch(tmp_path):
    work = SleepyWork(rounds=[4, 4, 4], draft_s=[0.05, 0.05, 0.05], verify_s=0.04)
    trace = run(work, 3)
    pairs = trace.overlaps()
    assert len(pairs) >= 3
    d, v = pairs[0]
    assert d.branches[0] not in v.branches and d.start < v.end and v.start < d.end
    # serial execution would need the sum of all intervals; concurrent runs finish sooner
    total = sum(i.duration for i in trace.intervals)
    assert trace.wall < 0.8 * total
    save_gantt(trace, tmp_path / "gantt.png")
    assert (tmp_path / "gantt.png").stat().st_size > 1000


def test_fcfs_order_and_once_per_round():
    # branch 0 drafts fast, branch 2 slowly: 0 would hog the target without the rounds rule
    work = SleepyWork(rounds=[6, 6, 6], draft_s=[0.005, 0.03, 0.06], verify_s=0.02)
    trace = run(work, 3)
    verifies, drafts = trace.of_kind("verify"), trace.of_kind("draft")
    by_round = {}
    for v in verifies:
        by_round.setdefault(v.round, []).extend(v.branches)
    assert sorted(by_round) == list(range(6))
    assert all(sorted(m) == [0, 1, 2] for m in by_round.values())  # each once per round
    for rnd in by_round:  # within a round, verification order = arrival order of the drafts
        arrivals = [v.start - v.waits[0] for v in verifies if v.round == rnd]
        assert arrivals == sorted(arrivals)
    assert [v.branches[0] for v in verifies if v.round == 0] == [0, 1, 2]
    assert len(drafts) == len(verifies) == 18 and work.drafts == [6, 6, 6]


def test_a_branch_verified_early_drafts_its_next_round_meanwhile():
    work = SleepyWork(rounds=[3, 3], draft_s=[0.01, 0.01], verify_s=0.05)
    trace = run(work, 2)
    first = [v for v in trace.of_kind("verify") if v.round == 0]
    ahead = [d for d in trace.of_kind("draft") if d.round == 1 and d.branches == first[0].branches]
    # branch verified first in round 0 drafted round 1's draft while the other was verified
    assert ahead[0].start < first[1].end
    second = [v for v in trace.of_kind("verify") if v.round == 1]
    assert second[0].branches == first[0].branches  # and is first in line in round 1


def test_drafter_threads_are_bounded():
    seen, lock = set(), threading.Lock()

    class Counting(SleepyWork):
        def draft(self, i):
            with lock:
                seen.add(threading.current_thread().name)
            super().draft(i)

    work = Counting(rounds=[2] * 12, draft_s=[0.01] * 12, verify_s=0.001)
    run(work, 12, workers=3)
    assert 1 <= len(seen) <= 3 and all(name.startswith("seedtree-drafter") for name in seen)


def test_one_failing_branch_does_not_stop_the_others():
    work = SleepyWork(rounds=[3, 3, 3], draft_s=[0.01, 0.01, 0.01], fail_on=1)
    trace = run(work, 3)
    assert set(work.errors) == {1} and "draft of branch 1 broke" in work.errors[1]
    assert work.left[0] == work.left[2] == 0
    assert not any(1 in v.branches for v in trace.of_kind("verify"))


def test_a_branch_that_leaves_between_rounds_drops_its_draft_made_ahead():
    work = SleepyWork(rounds=[5, 5], draft_s=[0.01, 0.04], verify_s=0.02)
    trace, rounds = Trace(method="fake"), FCFSRounds(work)
    rounds.round([0, 1], 0, trace)
    assert set(rounds.ahead) == {0, 1}  # both drafted their next round
    rounds.round([1], 1, trace)  # branch 0 was aborted between the rounds
    assert work.verified == [0, 1, 1] and set(rounds.ahead) == {1}


@pytest.mark.parametrize("n", [1, 3])
def test_trace_roundtrip(tmp_path, n):
    work = SleepyWork(rounds=[2] * n, draft_s=[0.01] * n)
    trace = run(work, n)
    trace.save(tmp_path / "t.json")
    again = Trace.load(tmp_path / "t.json")
    assert len(again.intervals) == len(trace.intervals)
    assert again.to_dict()["target_busy_fraction"] == pytest.approx(trace.target_busy_fraction())
