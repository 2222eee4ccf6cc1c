"""The SEED runner with fake models that sleep (sleep releases the GIL, as torch kernels do):
concurrency, FCFS order and the rounds rule are read off the trace."""

import threading
import time

import pytest

from seedtree.scheduling.queue import FCFSQueue, QueueItem
from seedtree.scheduling.rounds import RoundsScheduler
from seedtree.scheduling.runner import Runner, SchedulerConfig
from seedtree.scheduling.trace import Trace, save_gantt


class SleepyWork:
    """Branch i needs `rounds[i]` verifications; drafting takes draft_s[i], verifying verify_s."""

    def __init__(self, rounds, draft_s, verify_s=0.03, fail_on=None):
        self.left = list(rounds)
        self.draft_s, self.verify_s = draft_s, verify_s
        self.fail_on = fail_on
        self.errors, self.cancelled = {}, set()
        self.verify_calls = []
        self.active_verifies = 0
        self.lock = threading.Lock()

    def draft(self, i):
        if i == self.fail_on:
            raise RuntimeError(f"draft of branch {i} broke")
        time.sleep(self.draft_s[i])

    def verify(self, ids):
        with self.lock:
            self.active_verifies += 1
            assert self.active_verifies == 1  # ONE verifier
        time.sleep(self.verify_s)
        with self.lock:
            self.active_verifies -= 1
        self.verify_calls.append(list(ids))
        for i in ids:
            self.left[i] -= 1

    def done(self, i):
        return self.left[i] <= 0 or i in self.errors or i in self.cancelled

    def fail(self, i, error):
        self.errors[i] = error

    def cancel(self, i):
        self.cancelled.add(i)


def run(work, n, batched=False, cancelled=None):
    trace = Trace(method="fake")
    Runner(work, list(range(n)), SchedulerConfig(batched=batched), trace, cancelled).run()
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


def test_fcfs_order_and_at_most_once_per_round():
    # branch 0 drafts fast, branch 2 slowly: 0 would hog the target without the rounds rule
    work = SleepyWork(rounds=[6, 6, 6], draft_s=[0.005, 0.03, 0.06], verify_s=0.02)
    trace = run(work, 3)
    verifies = trace.of_kind("verify")
    drafts = trace.of_kind("draft")
    # at most once per round, and every branch once per round while all are running
    by_round = {}
    for v in verifies:
        by_round.setdefault(v.round, []).extend(v.branches)
    for rnd, members in by_round.items():
        assert len(members) == len(set(members)), (rnd, members)
    assert all(sorted(m) == [0, 1, 2] for r, m in by_round.items() if r < 5)
    # within a round, verification order = arrival order of the drafts
    for rnd in by_round:
        in_round = [v for v in verifies if v.round == rnd]
        arrivals = [v.start - v.waits[0] for v in in_round]
        assert arrivals == sorted(arrivals)
    assert len(drafts) == len(verifies) == 18


def test_batched_runner_verifies_a_whole_round_in_one_call():
    work = SleepyWork(rounds=[3, 3, 2], draft_s=[0.01, 0.02, 0.04], verify_s=0.03)
    run(work, 3, batched=True)
    assert [sorted(c) for c in work.verify_calls] == [[0, 1, 2], [0, 1, 2], [0, 1]]


def test_batched_runner_without_waiting_takes_whatever_is_queued():
    work = SleepyWork(rounds=[3, 3, 3], draft_s=[0.001, 0.03, 0.03], verify_s=0.05)
    trace = Trace(method="fake")
    config = SchedulerConfig(batched=True, wait_for_round=False)
    Runner(work, [0, 1, 2], config, trace).run()
    assert work.verify_calls[0] == [0]  # branch 0 arrived alone and was not kept waiting
    assert max(len(c) for c in work.verify_calls) >= 2


def test_one_failing_branch_does_not_stop_the_others():
    work = SleepyWork(rounds=[3, 3, 3], draft_s=[0.01, 0.01, 0.01], fail_on=1)
    run(work, 3)
    assert set(work.errors) == {1} and "draft of branch 1 broke" in work.errors[1]
    assert work.left[0] == work.left[2] == 0


def test_cancelled_branch_stops_consuming_target_time():
    cancelled = set()
    work = SleepyWork(rounds=[50, 5, 5], draft_s=[0.01, 0.01, 0.01], verify_s=0.01)
    timer = threading.Timer(0.1, lambda: cancelled.add(0))
    timer.start()
    trace = run(work, 3, cancelled=cancelled)
    timer.join()
    assert 0 in work.cancelled and work.left[0] > 0
    assert work.left[1] == work.left[2] == 0
    assert sum(0 in v.branches for v in trace.of_kind("verify")) < 50


def test_rounds_scheduler_plan_and_update():
    q = FCFSQueue()
    s = RoundsScheduler(active={0, 1, 2})
    for b, t in ((1, 0.1), (0, 0.2)):
        q.push(QueueItem(b, t))
    assert [i.branch for i in s.plan(q)] == [1]  # first come, first served
    s.update([1], [])
    q.push(QueueItem(1, 0.3))  # 1 drafted again already: it must wait for the next round
    assert [i.branch for i in s.plan(q)] == [0]
    s.update([0], [])
    assert s.plan(q) == []  # 1 waits: branch 2 has not been verified in this round
    q.push(QueueItem(2, 0.4))
    assert [i.branch for i in s.plan(q)] == [2]
    s.update([2], [])
    assert s.round == 1
    assert [i.branch for i in s.plan(q)] == [1]


@pytest.mark.parametrize("batched", [False, True])
def test_trace_roundtrip(tmp_path, batched):
    work = SleepyWork(rounds=[2, 2], draft_s=[0.01, 0.01])
    trace = run(work, 2, batched=batched)
    trace.save(tmp_path / "t.json")
    again = Trace.load(tmp_path / "t.json")
    assert len(again.intervals) == len(trace.intervals)
    assert again.to_dict()["target_busy_fraction"] == pytest.approx(trace.target_busy_fraction())
