"""THE engine object (`LLMEngine`) and many trees on it: P trees at once give the records of one
at a time (BFS and DFS, T=0 and coupled T>0), a stopped tree's requests leave the others'
outputs unchanged, KV and the prefix cache stay bounded over 200 trees, kill -9 during a P = 4
run then --resume loses and repeats nothing; the batch-aware draft policy on hand-made costs."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from conftest import save_pair_folders

from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.adaptive import CostModel, plan_depths
from seedtree.engine import (
    Job,
    LLMEngine,
    PrefixCache,
    Request,
    StepEngine,
    generate_many,
    sample_seed,
)
from seedtree.engine.core import _future_sink
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig
from seedtree.search.run import TIMING, run_dataset
from seedtree.tasks import get_task


@pytest.fixture(scope="module")
def long_pair():
    return tiny_pair(seed=0, context=4096)


class Varied:
    """GSM8K with values read from the text by a fixed function (tiny models write no digits),
    so selection (and DFS pruning) depends on the outputs."""

    def __new__(cls):
        base = type(get_task("gsm8k"))

        class _Varied(base):
            def parse_value(self, text):
                return float(sum(map(ord, text)) % 11)

        return _Varied()


def records(path):
    rows = [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]
    return {r["id"]: {k: v for k, v in r.items() if k not in TIMING} for r in rows}


# -- many trees at once -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algorithm,temperature,method,evaluation",
    [
        ("bfs", 0.0, "seed-batched", None),
        ("dfs", 0.0, "mcsd-batched", None),
        ("bfs", 0.8, "seed-batched", None),
        ("dfs", 0.8, "batched-ar-cached", None),
        ("bfs", 0.8, "seed-batched", "logprob"),  # each tree's reads keep its own start
    ],
)
def test_p_trees_at_once_give_the_records_of_one_at_a_time(
    long_pair, tmp_path, algorithm, temperature, method, evaluation
):
    task, examples = Varied(), Varied().load()[:6]
    search = SearchConfig(
        k=2, b=2, depth=2, algorithm=algorithm, threshold=3.0, evaluation=evaluation
    )
    engine = EngineConfig(method=method, temperature=temperature, seed=3, max_new_tokens=6)
    spec = SpecConfig(gamma=3, k_config=(2, 1))
    runs = {}
    for p in (1, 4):
        llm = LLMEngine(long_pair, method, spec)
        try:
            run_dataset(
                llm, task, examples, tmp_path / str(p), search, engine, spec, progress=False,
                concurrency=p,
            )  # fmt: skip
        finally:
            llm.close()
        runs[p] = records(tmp_path / str(p))
    assert runs[1] == runs[4] and len(runs[1]) == 6
    reference = tmp_path / "ar"
    ar = replace_method(engine, "ar")
    run_dataset(long_pair, task, examples, reference, search, ar, spec, progress=False)
    assert {i: r["signature"] for i, r in records(reference).items()} == {
        i: r["signature"] for i, r in runs[4].items()
    }  # and every method builds ar's trees


def replace_method(engine, method):
    from dataclasses import replace

    return replace(engine, method=method)


def test_trees_share_the_engine_s_rounds(long_pair, tmp_path):
    """Four trees in flight: their requests are verified in the same target forwards."""
    task, examples = Varied(), Varied().load()[:4]
    search = SearchConfig(k=2, b=1, depth=1)
    engine = EngineConfig(method="seed-batched", max_new_tokens=12)
    llm = LLMEngine(long_pair, "seed-batched", SpecConfig(gamma=2))
    try:
        run_dataset(llm, task, examples, tmp_path, search, engine, progress=False, concurrency=4)
        widest = max(len(i.branches) for i in llm.step_engine.trace.of_kind("verify"))
    finally:
        llm.close()
    assert widest > 3  # one tree's level has 2 requests; more in one forward: several trees


def test_a_stopped_request_leaves_the_others_outputs_unchanged(long_pair):
    ids = [[5 + i, 6, 7, 8] for i in range(4)]
    params = SamplingParams(temperature=0.9, seed=4, max_new_tokens=40, ignore_eos=True)
    alone = generate_many(long_pair, [Request(p, params) for p in ids[1:]], "seed-batched").results
    llm = LLMEngine(long_pair, "seed-batched", SpecConfig(gamma=3))
    try:
        victim = llm.new_id()
        doomed: Future = Future()
        llm.submit_jobs([Job(victim, ids[0], params, _future_sink(doomed))])
        futures = [llm.submit(p, params) for p in ids[1:]]
        time.sleep(0.05)
        llm.abort(victim)
        together = [f.result(timeout=60) for f in futures]
        assert doomed.result(timeout=60).finish_reason in ("cancelled", "length")
    finally:
        llm.close()
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]


def test_kv_and_prefix_cache_stay_bounded_over_200_trees(long_pair, tmp_path):
    task = Varied()
    examples = task.load()[:200]
    search = SearchConfig(k=2, b=1, depth=1)
    engine = EngineConfig(method="seed-batched", max_new_tokens=3)
    llm = LLMEngine(long_pair, "seed-batched", SpecConfig(gamma=2), cache_mb=0.5)
    try:
        summary = run_dataset(
            llm, task, examples, tmp_path, search, engine, progress=False, concurrency=8
        )
        cache, step = llm.prefix_cache, llm.step_engine
        assert summary.examples == 200
        assert cache.nbytes <= cache.capacity
        assert not (step.running or step.waiting or step.ids or step.leaders or step.following)
        assert not step.trace.routes and len(step.trace.intervals) <= 10_000
        assert llm.pending == 0 and not llm._sinks
    finally:
        llm.close()


def test_kill_9_during_a_p4_run_then_resume_loses_and_repeats_nothing(tmp_path):
    folders = tmp_path / "models"
    save_pair_folders(folders, seed=0, context=4096)
    out = tmp_path / "run"
    models = ["--draft", str(folders / "draft"), "--target", str(folders / "target")]
    argv = [
        sys.executable, "-m", "seedtree.cli", "run", "--task", "gsm8k", "--limit", "12",
        "--out", str(out), *models, "--draft-dtype", "float32", "--method", "seed-batched",
        "--depth", "2", "--k", "2", "--max-new-tokens", "24", "--concurrency", "4",
    ]  # fmt: skip
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records(out)
    assert 2 <= len(before) < 12
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    ids = [r["id"] for r in lines]
    assert len(ids) == len(set(ids)) == 12  # nothing lost, nothing twice
    after = records(out)
    assert all(after[i] == r for i, r in before.items())


def test_concurrency_is_checked(long_pair, tmp_path):
    from seedtree.errors import SeedtreeError

    with pytest.raises(SeedtreeError, match="concurrency must be >= 1"):
        run_dataset(
            long_pair, Varied(), Varied().load()[:1], tmp_path, SearchConfig(),
            EngineConfig(method="ar"), progress=False, concurrency=0,
        )  # fmt: skip


# -- the one engine object ----------------------------------------------------------------------
def test_the_engine_answers_requests_from_many_threads(long_pair):
    params = SamplingParams(max_new_tokens=10)
    prompts = [[3 + i, 4, 5] for i in range(12)]
    requests = [Request(p, params) for p in prompts]
    reference = [r.token_ids for r in generate_many(long_pair, requests, "ar").results]
    llm = LLMEngine(long_pair, "seed-batched", SpecConfig(gamma=3))
    try:
        with ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda p: llm.submit(p, params).result(timeout=60), prompts))
    finally:
        llm.close()
    assert [o.token_ids for o in outs] == reference


def test_a_search_on_an_engine_of_another_method_is_refused(long_pair):
    from seedtree.errors import SeedtreeError
    from seedtree.search import solve

    llm = LLMEngine(long_pair, "ar")
    try:
        with pytest.raises(SeedtreeError, match="the engine runs 'ar'"):
            solve(llm, Varied(), Varied().load()[0], engine=EngineConfig(method="seed-batched"))
    finally:
        llm.close()


def test_the_seeding_rule():
    assert sample_seed(7) == sample_seed(7, 0) == 7
    assert sample_seed(None, 3) is None
    assert sample_seed(7, 1) != sample_seed(8, 1) != sample_seed(7, 2)


# -- speculation that knows the batch -----------------------------------------------------------
CPU = CostModel(a=0.25, b=0.002, e=0.0, d0=0.06, d1=0.004)  # a memory-bound CPU's shape


def test_only_methods_with_one_verification_per_round_plan_the_batch(pair):
    """The batch plan prices one target forward over the batch: `seed-batched` and `sd` plan
    with the engine's costs; SEED's FCFS rounds (one verification per branch) keep each
    branch's own draft length. The engine measures costs where it plans or runs many requests
    at once (they price the split of prompt reads); `sd`'s fixed policy needs none."""
    for method, plans in (
        ("seed-batched", True),
        ("sd", True),
        ("seed", False),
        ("mcsd-seed", False),
    ):
        engine = LLMEngine(pair, method, costs=CPU)
        assert engine.step_engine.plans is plans and engine.step_engine.costs is CPU
        engine.close()
    for method, spec, measured in (
        ("seed", None, True),
        ("batched-ar-cached", None, True),
        ("sd", SpecConfig(policy="fixed"), False),
    ):
        engine = LLMEngine(pair, method, spec)
        run = engine.generate([Request([5, 9, 11], SamplingParams(max_new_tokens=4))])
        assert run[0][0].error is None
        assert (engine.costs is not None) is measured and engine.step_engine.costs is engine.costs
        engine.close()


def test_a_lone_branch_that_is_often_right_drafts_deep():
    assert plan_depths([0.9], (1,) * 4, CPU, 100) == [4]


def test_a_branch_that_is_rarely_right_does_not_draft():
    assert plan_depths([0.05], (1,) * 4, CPU, 100) == [0]


def test_speculation_fades_as_the_batch_fills():
    depths = [max(plan_depths([0.7] * n, (1,) * 4, CPU, 100)) for n in (1, 8, 32, 128, 512)]
    assert depths == sorted(depths, reverse=True)
    assert depths[0] >= 2 and depths[-1] == 0  # plain batched decoding when full


def test_the_likeliest_branches_draft_first():
    plan = plan_depths([0.1, 0.9, 0.5], (1,) * 4, CostModel(0.1, 0.0, 0.0, 0.02, 0.005), 10)
    assert plan[1] >= plan[2] > plan[0] == 0  # the unlikely one's draft rows would not pay


def test_a_draft_that_must_catch_up_drafts_after_those_that_need_not():
    costs = CostModel(0.1, 0.0, 0.0, 0.02, 0.005)
    alphas, remaining = [0.8, 0.9, 0.8], [40, 40, 40]
    plan = plan_depths(alphas, (1,) * 4, costs, 10, [0, 400, 0], remaining)
    assert plan[0] == plan[2] > 0 and plan[1] == 0  # its catch-up would cost more than it saves
    plan = plan_depths(alphas, (1,) * 4, costs, 10, [0, 4, 0], remaining)
    assert plan[1] == plan[0] > 0  # a short catch-up, shared over 40 tokens, pays
    assert plan_depths(alphas, (1,) * 4, costs, 10, [0, 400, 0], [4000] * 3)[1] > 0


def test_a_full_batch_skips_the_draft_prefill_and_catches_up_when_it_empties(long_pair):
    """The plan drafts nothing for a full batch: its prompts skip q's prefill. When the batch
    has emptied to the one long request, its draft catches up and drafts; every output equals
    ar's, and the prompt q read while catching up goes into the prefix cache."""
    costs = CostModel(a=0.01, b=0.004, e=0.0, d0=0.002, d1=0.0)
    short = SamplingParams(max_new_tokens=2, ignore_eos=True)
    long = SamplingParams(max_new_tokens=30, ignore_eos=True)
    prompts = [[3 + i % 12, 4 + i // 12, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14] for i in range(24)]
    params = [short] * 23 + [long]
    requests = [Request(p, sp) for p, sp in zip(prompts, params, strict=True)]
    ar = generate_many(long_pair, requests, "ar").results
    cache = PrefixCache()
    engine = StepEngine(long_pair, "seed-batched", SpecConfig(gamma=4), cache, costs=costs)
    for i, r in enumerate(requests):
        engine.add_request(i, r.prompt_ids, r.params)
    outputs = engine.step()
    assert [b.q.length for b in engine.running] == [0] * 24  # no q prefill for a full batch
    assert cache.trees["q"].leaves() == []
    results = {o.request_id: o.result for o in outputs if o.finished}
    while engine.has_unfinished():
        results |= {o.request_id: o.result for o in engine.step() if o.finished}
    assert [results[i].token_ids for i in range(24)] == [r.token_ids for r in ar]
    assert results[23].stats.drafted > 0  # caught up, then drafted
    assert [leaf.tokens[-1] for leaf in cache.trees["q"].leaves()] == [prompts[23][-2]]


def test_the_batch_policy_drafts_less_for_a_full_batch(long_pair):
    """On the step engine: with costs where rows are dear, many requests draft less per round
    than one, and every output still equals ar's."""
    costs = CostModel(a=0.01, b=0.004, e=0.0, d0=0.002, d1=0.0)
    params = SamplingParams(max_new_tokens=24, ignore_eos=True)
    prompts = [[3 + i, 4, 5] for i in range(24)]
    ar = generate_many(long_pair, [Request(p, params) for p in prompts], "ar").results

    def drafted_per_round(n):
        llm = LLMEngine(long_pair, "seed-batched", SpecConfig(gamma=4), costs=costs)
        try:
            results, _ = llm.generate([Request(p, params) for p in prompts[:n]])
        finally:
            llm.close()
        assert [r.token_ids for r in results] == [r.token_ids for r in ar[:n]]
        return sum(r.stats.drafted for r in results) / sum(r.stats.rounds for r in results)

    assert drafted_per_round(24) < drafted_per_round(1)


def test_the_policy_is_checked():
    from seedtree.errors import SeedtreeError

    with pytest.raises(SeedtreeError, match="policy must be one of batch, fixed"):
        SpecConfig(policy="greedy")


def test_the_cost_model_is_measured_at_start_up(pair, measured_costs):
    llm = LLMEngine(pair, "seed-batched", SpecConfig(gamma=2))
    try:
        llm.submit([5, 6, 7], SamplingParams(max_new_tokens=3)).result(timeout=60)
        costs = llm.costs
        assert costs is not None and llm.step_engine.costs is costs
        assert costs.a > 0 and min(costs.b, costs.e, costs.d0, costs.d1) >= 0
    finally:
        llm.close()
    fixed = LLMEngine(pair, "seed-batched", SpecConfig(gamma=2, policy="fixed"))
    try:
        fixed.submit([5, 6, 7], SamplingParams(max_new_tokens=3)).result(timeout=60)
        # measured (they price the split of prompt reads), but drafts go branch by branch
        assert fixed.step_engine.costs is fixed.costs is not None
        assert not fixed.step_engine.plans
    finally:
        fixed.close()
