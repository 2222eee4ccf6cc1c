"""Many requests on tiny float64 models: every method equals serial AR at T=0, request by request;
T>0 results depend on seeds only, never on scheduling; branch distributions match the target."""

import random

import pytest
import torch
from conftest import encode
from test_engines import chi2_pvalue, target_marginals

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar
from seedtree.decoding.check import find_divergence
from seedtree.engine import METHODS as MANY_METHODS
from seedtree.engine import Request, expand_requests, generate_many
from seedtree.errors import SeedtreeError
from seedtree.models.tiny import CHARS


def prompts_for(pair, n, seed):
    rng = random.Random(seed)
    texts = ["".join(rng.choice(CHARS) for _ in range(rng.randint(2, 25))) for _ in range(n)]
    return [encode(pair, t) for t in texts]


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("method", MANY_METHODS)
def test_every_method_equals_serial_ar(pair, method, n):
    prompts = prompts_for(pair, n, seed=n)
    params = [SamplingParams(max_new_tokens=24 + 3 * i, ignore_eos=i % 2 == 0) for i in range(n)]
    requests = [Request(ids, sp) for ids, sp in zip(prompts, params, strict=True)]
    expected = [generate_ar(pair, r.prompt_ids, r.params) for r in requests]
    run = generate_many(pair, requests, method, SpecConfig(gamma=3, k_config=(2, 1, 1)))
    assert len(run.results) == n
    for r, ar, req in zip(run.results, expected, requests, strict=True):
        div = find_divergence(pair, req.prompt_ids, ar.token_ids, r.token_ids)
        assert div is None, (method, div)
        assert r.finish_reason == ar.finish_reason and r.text == ar.text
    assert run.stats.new_tokens == sum(len(ar.token_ids) for ar in expected)
    assert run.trace.intervals


def test_same_prompt_n_samples_share_the_prefill(pair):
    ids = encode(pair, "one state, many thoughts")
    requests = expand_requests(
        [ids], SamplingParams(max_new_tokens=20, n=3, seed=5, temperature=1.0)
    )
    seeds = [r.params.seed for r in requests]
    assert seeds[0] == 5 and len(set(seeds)) == 3
    # seeds are hashed, not added: seed 6's samples share none with seed 5's
    others = expand_requests([ids], SamplingParams(max_new_tokens=20, n=3, seed=6))
    assert not set(seeds) & {r.params.seed for r in others}
    run = generate_many(pair, requests, "seed-batched")
    # prefill computed once: the other branches copied the first one's caches
    forwards = [r.stats.target_forwards - r.stats.rounds for r in run.results]
    assert forwards == [1, 0, 0]
    serial = generate_many(pair, requests, "sd")
    assert [r.token_ids for r in run.results] == [r.token_ids for r in serial.results]


@pytest.mark.parametrize("method", ["seed", "mcsd-seed", "seed-batched"])
def test_sampling_depends_on_seeds_not_scheduling(pair, method):
    prompts = prompts_for(pair, 3, seed=11)
    requests = [
        Request(
            ids, SamplingParams(temperature=0.9, max_new_tokens=30, seed=100 + i, ignore_eos=True)
        )
        for i, ids in enumerate(prompts)
    ]
    first = generate_many(pair, requests, method)
    second = generate_many(pair, requests, method)
    assert [r.token_ids for r in first.results] == [r.token_ids for r in second.results]
    # the same branch state with the same seed gives the same tokens when run alone
    alone = generate_many(pair, requests[1:2], method)
    assert alone.results[0].token_ids == first.results[1].token_ids


@pytest.mark.parametrize("method", ["seed", "seed-batched"])
def test_branch_distribution_matches_target(pair, method):
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    c1, c2 = torch.zeros(pair.vocab_size), torch.zeros(pair.vocab_size)
    runs, n = 350, 0
    for i in range(runs):
        params = SamplingParams(
            temperature=1.0,
            max_new_tokens=2,
            ignore_eos=True,
            seed=3 * i,
            n=3,
            sampling="speculative",
        )
        run = generate_many(pair, expand_requests([ids], params), method, SpecConfig(gamma=2))
        for r in run.results:
            c1[r.token_ids[0]] += 1
            c2[r.token_ids[1]] += 1
            n += 1
    assert chi2_pvalue(c1, p1, n) > 0.001
    assert chi2_pvalue(c2, p2, n) > 0.001


@pytest.mark.parametrize("method", MANY_METHODS)
def test_cancelled_works_for_every_method(pair, method):
    """`cancelled` is honoured by every method (a request cancelled before it starts yields
    nothing) and unknown indices are ignored."""
    prompts = prompts_for(pair, 3, seed=2)
    requests = [Request(ids, SamplingParams(max_new_tokens=12, ignore_eos=True)) for ids in prompts]
    run = generate_many(pair, requests, method, cancelled={1, 99})
    assert run.results[1].finish_reason == "cancelled" and not run.results[1].token_ids
    for i in (0, 2):
        ar = generate_ar(pair, requests[i].prompt_ids, requests[i].params)
        assert run.results[i].token_ids == ar.token_ids, method


def test_failing_branch_is_isolated(pair, monkeypatch):
    from seedtree.decoding import branch as branch_mod

    original = branch_mod.Branch.round_shape

    def flaky(self):
        if self.index == 0 and self.stats.rounds == 2:
            raise RuntimeError("simulated drafter crash")
        return original(self)

    monkeypatch.setattr(branch_mod.Branch, "round_shape", flaky)
    prompts = prompts_for(pair, 3, seed=4)
    requests = [Request(ids, SamplingParams(max_new_tokens=30, ignore_eos=True)) for ids in prompts]
    for method in ("seed", "seed-batched"):
        run = generate_many(pair, requests, method)
        assert run.results[0].finish_reason == "error"
        assert "simulated drafter crash" in run.results[0].error
        assert run.stats.errors == 1
        for r, req in zip(run.results[1:], requests[1:], strict=True):
            assert r.token_ids == generate_ar(pair, req.prompt_ids, req.params).token_ids


@pytest.mark.parametrize("method", ["seed-batched", "batched-ar"])
def test_failed_batched_verification_costs_only_the_failing_branch(pair, monkeypatch, method):
    """Regression (issue #12): a batched verification that fails is redone branch by branch;
    branches verified alone must not fail because the batch did, and a branch that fails in its
    own commit fails alone."""
    from seedtree.decoding import batch as batch_mod
    from seedtree.decoding import branch as branch_mod

    forward, accept = batch_mod.RaggedBatch.forward, branch_mod.Branch.accept
    calls = {"n": 0}

    def batch_fails_once(self, feeds, keep="all"):
        if self.model is pair.target and len(self.seqs) > 1:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("simulated batched forward failure")
        return forward(self, feeds, keep)

    def accept_fails(self, path, verdict, logits):
        if self.index == 1 and self.stats.rounds == 3:
            raise RuntimeError("simulated commit failure")
        return accept(self, path, verdict, logits)

    monkeypatch.setattr(batch_mod.RaggedBatch, "forward", batch_fails_once)
    monkeypatch.setattr(branch_mod.Branch, "accept", accept_fails)
    prompts = prompts_for(pair, 3, seed=8)
    requests = [Request(ids, SamplingParams(max_new_tokens=25, ignore_eos=True)) for ids in prompts]
    run = generate_many(pair, requests, method)
    assert calls["n"] >= 3
    assert run.results[1].finish_reason == "error" and "commit failure" in run.results[1].error
    for i in (0, 2):
        ar = generate_ar(pair, requests[i].prompt_ids, requests[i].params)
        assert run.results[i].token_ids == ar.token_ids and run.results[i].error is None


def test_one_token_prompt_with_one_new_token(pair):
    """Regression (issue #12): a 1-token prompt with max_new_tokens=1 crashed every
    branch-based method (nothing was ever fed to the draft cache)."""
    params = SamplingParams(max_new_tokens=1, ignore_eos=True)
    expected = generate_ar(pair, [7], params).token_ids
    for method in MANY_METHODS:
        if method == "hf-assisted":
            continue
        run = generate_many(pair, [Request([7], params)], method)
        assert run.results[0].error is None, (method, run.results[0].error)
        assert run.results[0].token_ids == expected, method


def test_bad_many_input(pair):
    with pytest.raises(SeedtreeError, match="unknown method 'fast'"):
        generate_many(pair, [Request([5, 6], SamplingParams())], "fast")
    with pytest.raises(SeedtreeError, match="no requests"):
        generate_many(pair, [], "seed")
    with pytest.raises(SeedtreeError, match="n must be >= 1"):
        SamplingParams(n=0)


def test_drafter_threads_are_bounded(pair, monkeypatch):
    """Regression (issue #12): `seed` started a thread per branch (10,000 for --n 10000); now at
    most MAX_DRAFT_THREADS drafters (a pool per round, its threads named _0.._7) serve any
    number of branches."""
    import threading

    from seedtree.scheduling.fcfs import MAX_DRAFT_THREADS

    started = []
    original = threading.Thread.start

    def start(self):
        started.append(self.name)
        return original(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    requests = [Request([5 + i % 7, 9], SamplingParams(max_new_tokens=2)) for i in range(30)]
    run = generate_many(pair, requests, "seed")
    assert all(r.error is None and len(r.token_ids) == 2 for r in run.results)
    drafters = {name for name in started if name.startswith("seedtree-drafter")}
    assert 1 <= len(drafters) <= MAX_DRAFT_THREADS < len(requests)
