"""The step engine on tiny float64 models: continuous batching, abort, the prefix cache (hits are
bit-identical to a cold prefill; eviction changes nothing), batched drafting, adaptive
speculation (lossless at T>0), streaming outputs."""

import random

import pytest
import torch
from conftest import encode
from test_engines import chi2_pvalue, target_marginals

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar
from seedtree.decoding.adaptive import AcceptanceEstimate, CostModel, best_gamma
from seedtree.decoding.batch import width_groups
from seedtree.decoding.kv import KVSequence
from seedtree.engine import PrefixCache, Request, StepEngine, generate_many
from seedtree.errors import SeedtreeError
from seedtree.models.tiny import CHARS


def prompts_for(pair, n, seed):
    rng = random.Random(seed)
    texts = ["".join(rng.choice(CHARS) for _ in range(rng.randint(3, 25))) for _ in range(n)]
    return [encode(pair, t) for t in texts]


def drain(engine: StepEngine) -> dict:
    results = {}
    while engine.has_unfinished():
        results |= {o.request_id: o.result for o in engine.step() if o.finished}
    return results


@pytest.mark.parametrize(
    "method", ["seed-batched", "batched-ar", "batched-ar-cached", "sd", "seed", "mcsd-seed"]
)
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_requests_added_while_others_run_match_running_alone(pair, method, temperature):
    prompts = prompts_for(pair, 4, seed=1)
    params = [
        SamplingParams(temperature=temperature, max_new_tokens=20 + 4 * i, seed=10 + i)
        for i in range(4)
    ]
    alone = [generate_many(pair, [Request(ids, sp)], method).results[0] for ids, sp in
             zip(prompts, params, strict=True)]  # fmt: skip
    engine = StepEngine(pair, method, SpecConfig(gamma=4), PrefixCache())
    engine.add_request("a", prompts[0], params[0])
    results, joined = {}, []
    for step in range(200):
        if step in (2, 5, 9):  # requests arrive while others are decoding
            k = len(joined) + 1
            engine.add_request("abcd"[k], prompts[k], params[k])
            joined.append((step, len(engine.running)))
        results |= {o.request_id: o.result for o in engine.step() if o.finished}
        if not engine.has_unfinished() and len(joined) == 3:
            break
    assert any(running > 0 for _, running in joined)  # someone was running when they joined
    for k, ref in enumerate(alone):
        assert results["abcd"[k]].token_ids == ref.token_ids, (method, k)
    if temperature == 0:
        for k, ref in enumerate(alone):
            assert ref.token_ids == generate_ar(pair, prompts[k], params[k]).token_ids


def test_batched_rounds_verify_every_branch_in_one_target_forward(pair):
    prompts = prompts_for(pair, 3, seed=2)
    engine = StepEngine(pair, "seed-batched", SpecConfig(gamma=4, adaptive=False))
    for i, ids in enumerate(prompts):
        engine.add_request(i, ids, SamplingParams(max_new_tokens=30, ignore_eos=True))
    counts = {"p": 0, "q": 0}
    hooks = [
        pair.target.register_forward_pre_hook(lambda *a: counts.__setitem__("p", counts["p"] + 1)),
        pair.draft.register_forward_pre_hook(lambda *a: counts.__setitem__("q", counts["q"] + 1)),
    ]
    try:
        # admission: ONE draft prefill forward; the target takes the prompts with the first
        # round's trees (no prefill forward of its own)
        engine.step()
        assert counts == {"p": 1, "q": 1 + 4}  # 3 branches: ONE forward per draft step
        counts.update(p=0, q=0)
        engine.step()
        assert counts == {"p": 1, "q": 4}
        # a request joining running branches: its prompt and first tree in a forward apart
        # (a batch pads every row to its widest: the prompt beside them would widen theirs)
        joining = encode(pair, "a late one")
        engine.add_request(3, joining, SamplingParams(max_new_tokens=30, ignore_eos=True))
        counts.update(p=0, q=0)
        engine.step()
        assert counts == {"p": 2, "q": 1 + 4}
    finally:
        for h in hooks:
            h.remove()
    assert len(engine.trace.of_kind("verify")[-1].branches) == 4
    results = drain(engine)
    for i, ids in enumerate([*prompts, joining]):
        params = SamplingParams(max_new_tokens=30, ignore_eos=True)
        assert results[i].token_ids == generate_ar(pair, ids, params).token_ids
        assert results[i].stats.target_forwards == results[i].stats.rounds  # no prefill forward


@pytest.mark.parametrize("method", ["seed-batched", "seed"])
def test_abort_frees_kv_and_leaves_others_unchanged(pair, method):
    prompts = prompts_for(pair, 3, seed=3)
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    engine = StepEngine(pair, method)
    for i, ids in enumerate(prompts):
        engine.add_request(i, ids, params)
    engine.step()
    engine.step()
    victim = engine.ids[1]
    assert victim.p.length > 0 and victim.q.length > 0
    assert engine.abort(1) and not engine.abort(1) and not engine.abort("unknown")
    assert victim.p.length == 0 and victim.q.length == 0 and victim not in engine.running
    results = drain(engine)
    assert results[1].finish_reason == "cancelled"
    for i in (0, 2):
        assert results[i].token_ids == generate_ar(pair, prompts[i], params).token_ids


def test_streamed_tokens_add_up_to_the_result(pair):
    engine = StepEngine(pair, "seed-batched")
    for i, ids in enumerate(prompts_for(pair, 2, seed=4)):
        engine.add_request(i, ids, SamplingParams(max_new_tokens=17, ignore_eos=True))
    streamed = {0: [], 1: []}
    results = {}
    while engine.has_unfinished():
        for out in engine.step():
            streamed[out.request_id] += out.new_token_ids
            assert streamed[out.request_id] == out.token_ids
            if out.finished:
                results[out.request_id] = out.result
    assert all(streamed[i] == results[i].token_ids and len(streamed[i]) == 17 for i in (0, 1))


def test_prefix_cache_hit_gives_bit_identical_logits(pair):
    """KV served from the cache (computed inside a longer prompt) + the rest prefilled gives
    exactly the logits of a cold prefill of the whole prompt in one forward (float64)."""
    shared = encode(pair, "the same instructions and problem text, ")
    first, second = shared + encode(pair, "then thought a"), shared + encode(pair, "and thought b")
    cache = PrefixCache()
    warm = KVSequence(pair.target, pair.vocab_size)
    warm.forward(first)
    cache.insert(first, warm, None)
    hit = KVSequence(pair.target, pair.vocab_size)
    assert cache.match(second[:-1], hit, None) == len(shared)
    hot = hit.forward(second[len(shared) :], keep=len(second) - len(shared))
    cold = KVSequence(pair.target, pair.vocab_size).forward(second, keep=len(second))
    assert torch.equal(hot, cold[len(shared) :])
    assert cache.stats.hit_tokens == len(shared)


def test_a_prefix_shared_by_prompts_admitted_together_is_fed_once(pair):
    """`share_prefixes`: prompts that share MIN_SHARED tokens or more get the common prefix
    once (one forward per level) and copies of its KV, level by level; the KV equals a cold
    prefill's (float64); a prompt that shares less, or a prefix its cache already holds, is
    left alone."""
    from seedtree.decoding import speculative
    from seedtree.decoding.speculative import MIN_SHARED, share_prefixes

    problem = encode(pair, "solve the problem: twelve apples at seven each, how many? ")
    steps = problem + encode(pair, "steps: first we add them up and then ")
    prompts = [
        steps + encode(pair, "a thought"),
        problem + encode(pair, "another way"),
        steps + encode(pair, "b thought"),
        encode(pair, "a different task altogether, nothing shared here"),
    ]
    assert len(steps) - len(problem) >= MIN_SHARED and len(problem) >= MIN_SHARED
    fed = []
    original = speculative._prefill_model

    def counted(seqs, todo, price=None):
        fed.append([len(ids) for ids in todo])
        original(seqs, todo, price)

    seqs = [KVSequence(pair.target, pair.vocab_size) for _ in prompts]
    speculative._prefill_model = counted
    try:
        share_prefixes(seqs, prompts)
    finally:
        speculative._prefill_model = original
    assert [s.length for s in seqs] == [len(steps), len(problem), len(steps), 0]
    assert fed == [[len(problem)], [len(steps) - len(problem)]]  # one forward per level
    for seq, ids in zip(seqs[:3], prompts[:3], strict=True):  # then the rest: a cold prefill's
        n = seq.length
        rest = seq.forward(ids[n:], keep=len(ids) - n)
        cold = KVSequence(pair.target, pair.vocab_size).forward(ids, keep=len(ids))
        assert torch.allclose(rest, cold[n:], atol=1e-10)
    again = [KVSequence(pair.target, pair.vocab_size) for _ in range(2)]
    again[0].forward(steps)  # holds the prefix already: nothing left worth sharing
    share_prefixes(again, [prompts[0], prompts[2]])
    assert [s.length for s in again] == [len(steps), 0]


@pytest.mark.parametrize("method", ["seed-batched", "batched-ar-cached", "seed"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_prompts_sharing_a_prefix_decode_as_alone(pair, method, temperature):
    """A tree's value prompts (one long start, different last steps) admitted together give
    the tokens each gives alone (and ar's at T=0)."""
    start = encode(pair, "problem: a farmer has 12 cows and buys 7 more. steps so far: ")
    prompts = [start + encode(pair, s) for s in ("he has 19", "12+7=19", "he sold 2")]
    params = [SamplingParams(temperature=temperature, max_new_tokens=12, seed=5 + i)
              for i in range(3)]  # fmt: skip
    together = generate_many(pair, [Request(*a) for a in zip(prompts, params, strict=True)], method)
    for ids, sp, result in zip(prompts, params, together.results, strict=True):
        alone = generate_many(pair, [Request(ids, sp)], method).results[0]
        assert result.token_ids == alone.token_ids
        if temperature == 0:
            assert result.token_ids == generate_ar(pair, ids, sp).token_ids


def test_width_groups_is_the_cheapest_split():
    """`width_groups` against every partition of up to 6 rows (brute force), on random widths
    and costs: never dearer; a long row beside short ones goes apart only where a forward is
    cheaper than the padding it saves."""
    rng = random.Random(3)

    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for part in partitions(rest):
            yield [[first], *part]
            for i in range(len(part)):
                yield [*part[:i], [first, *part[i]], *part[i + 1 :]]

    for _ in range(60):
        widths = [rng.choice([1, 2, 5, 20, 80, 130]) for _ in range(rng.randint(1, 6))]
        a, b = rng.choice([0.01, 0.2, 5.0]), rng.choice([0.001, 0.01])

        def cost(rows, width, a=a, b=b):
            return a + b * rows * width

        def total(groups, cost=cost, widths=widths):
            return sum(cost(len(g), max(widths[i] for i in g)) for g in groups)

        groups = width_groups(widths, cost)
        assert sorted(i for g in groups for i in g) == list(range(len(widths)))
        cheapest = min(total(p) for p in partitions(list(range(len(widths)))))
        assert total(groups) <= cheapest + 1e-12
    assert width_groups([130, 40, 40, 40], lambda rows, width: 20 + rows * width) == [
        [1, 2, 3],
        [0],
    ]
    assert width_groups([130, 40, 40, 40], lambda rows, width: 1000 + rows * width) == [
        [1, 2, 3, 0]
    ]


ROWS_DEAR = CostModel(a=0.01, b=0.004, e=0.0, d0=0.002, d1=0.001)  # padding dearer than a forward


@pytest.mark.parametrize("method", ["seed-batched", "batched-ar-cached", "seed"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_prompts_of_very_different_lengths_are_read_apart(pair, method, temperature, monkeypatch):
    """With the measured costs, a long prompt admitted beside short ones is read in forwards of
    its own where padding every row to it costs more (fewer padded row-tokens than without
    costs), and every request gives the tokens it gives alone (ar's at T=0)."""
    from seedtree.decoding import batch

    prompts = [
        encode(pair, "a long problem: a farmer has twelve cows, buys seven more and sells two"),
        *(encode(pair, s) for s in ("ab", "cd e", "fgh")),
    ]
    params = [SamplingParams(temperature=temperature, max_new_tokens=10, seed=3 + i)
              for i in range(len(prompts))]  # fmt: skip
    padded = []
    forward = batch.RaggedBatch.forward

    def counted(self, feeds, *args, **kwargs):
        padded.append(len(self.seqs) * max(len(ids) for ids, _ in feeds.values()))
        return forward(self, feeds, *args, **kwargs)

    monkeypatch.setattr(batch.RaggedBatch, "forward", counted)
    runs = {}
    for costs in (None, ROWS_DEAR):
        engine = StepEngine(pair, method, SpecConfig(gamma=3), PrefixCache(64), costs=costs)
        for i, (ids, sp) in enumerate(zip(prompts, params, strict=True)):
            engine.add_request(i, ids, sp)
        padded.clear()
        results = drain(engine)
        runs[costs] = ([results[i].token_ids for i in range(len(prompts))], sum(padded))
    assert runs[ROWS_DEAR][0] == runs[None][0]
    assert runs[ROWS_DEAR][1] < runs[None][1]
    for ids, sp, tokens in zip(prompts, params, runs[ROWS_DEAR][0], strict=True):
        assert tokens == generate_many(pair, [Request(ids, sp)], method).results[0].token_ids
        if temperature == 0:
            assert tokens == generate_ar(pair, ids, sp).token_ids


def test_prefix_cache_serves_calls_and_eviction_changes_nothing(pair):
    shared = encode(pair, "solve: 12*7 = ? step by step, ")
    prompts = [shared + encode(pair, s) for s in ("first", "second", "third")]
    params = SamplingParams(max_new_tokens=15, ignore_eos=True)
    expected = [generate_ar(pair, ids, params).token_ids for ids in prompts]
    roomy, tiny = PrefixCache(64), PrefixCache(0.001)  # 64 MB; ~1 KB: evicts almost everything
    for cache in (roomy, tiny):
        for ids, want in zip(prompts, expected, strict=True):  # one call per prompt
            run = generate_many(pair, [Request(ids, params)], "seed-batched", prefix_cache=cache)
            assert run.results[0].token_ids == want
    assert roomy.stats.hit_tokens >= 2 * len(shared) and roomy.stats.evicted_bytes == 0
    assert tiny.stats.evicted_bytes > 0 and tiny.nbytes <= tiny.capacity
    run = generate_many(pair, [Request(prompts[0], params)], "seed-batched", prefix_cache=roomy)
    assert run.stats.prefix_hit_rate > 0.9 and run.results[0].stats.cached_tokens > 0


def test_adaptive_gamma_follows_alpha():
    low, high = AcceptanceEstimate(), AcceptanceEstimate()
    for _ in range(10):
        low.update(drafted=4, accepted=0)
        high.update(drafted=4, accepted=4)
    assert low.alpha < 0.1 and high.alpha > 0.9
    assert best_gamma(low.alpha, 0.15, 6) == 0  # speculation does not pay: plain decoding
    assert best_gamma(high.alpha, 0.15, 6) == 6
    assert best_gamma(0.5, 0.15, 6) in (1, 2, 3)


@pytest.mark.parametrize("method", ["sd", "seed-batched"])
def test_adaptive_speculation_keeps_the_target_distribution(pair, method):
    """Adaptive draft length and the draft-confidence stop at T=1: the first two tokens still
    follow the target (chi-square); the draft length really varied."""
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    spec = SpecConfig(gamma=4, adaptive=True, min_draft_prob=0.2)
    c1, c2 = torch.zeros(pair.vocab_size), torch.zeros(pair.vocab_size)
    lengths, n = set(), 0
    for i in range(400):
        params = SamplingParams(
            temperature=1.0, max_new_tokens=6, ignore_eos=True, seed=7 * i, sampling="speculative"
        )
        reqs = [Request(ids, params.__class__(**{**params.__dict__, "n": 1, "seed": 7 * i + j}))
                for j in range(3)]  # fmt: skip
        for r in generate_many(pair, reqs, method, spec).results:
            c1[r.token_ids[0]] += 1
            c2[r.token_ids[1]] += 1
            lengths.add(r.stats.drafted)
            n += 1
    assert len(lengths) > 2
    assert chi2_pvalue(c1, p1, n) > 0.001
    assert chi2_pvalue(c2, p2, n) > 0.001


def test_bad_requests(pair):
    engine = StepEngine(pair, "seed-batched")
    with pytest.raises(SeedtreeError, match="empty prompt"):
        engine.add_request(0, [], SamplingParams())
    with pytest.raises(SeedtreeError, match="token ids must be ints"):
        engine.add_request(0, [5, 10**6], SamplingParams())
    engine.add_request(0, [5], SamplingParams())
    with pytest.raises(SeedtreeError, match="already in use"):
        engine.add_request(0, [6], SamplingParams())
    with pytest.raises(SeedtreeError, match="does not run on the step engine"):
        StepEngine(pair, "ar")


def test_arrivals_bench_runs_every_schedule(pair):
    from seedtree.bench.arrivals import ArrivalsBenchConfig, markdown_table, run_arrivals_bench
    from seedtree.llm import LLM

    cfg = ArrivalsBenchConfig(n=3, interval_s=0.05, max_new_tokens=6, repeat=2)
    report = run_arrivals_bench(LLM(models=pair), cfg, progress=False)
    assert [list(p) for p in report["passes"]] == [
        list(cfg.methods),
        [*cfg.methods[1:], cfg.methods[0]],
    ]
    for s in report["summary"].values():
        assert s["mean_latency_s"] > 0 and s["throughput_rps"] > 0
    assert "static batched-ar" in markdown_table(report)


@pytest.mark.parametrize("method, max_running", [("sd", 1), ("mcsd", 1), ("seed-batched", 2)])
def test_at_most_max_running_branches_per_round(pair, method, max_running):
    """Serial methods decode request by request; a batched engine admits at most `max_running`
    branches (the others wait their turn); outputs are AR's either way."""
    prompts = [encode(pair, t) for t in ("a b c", "d e f g", "h i", "j k l m n")]
    params = SamplingParams(max_new_tokens=10, ignore_eos=True)
    engine = StepEngine(pair, method, SpecConfig(gamma=3, k_config=(2, 1)), max_running=2)
    for i, ids in enumerate(prompts):
        engine.add_request(i, ids, params)
    results = {}
    while engine.has_unfinished():
        results |= {o.request_id: o.result for o in engine.step() if o.finished}
    verifies = engine.trace.of_kind("verify")
    assert max(len(v.branches) for v in verifies) == max_running
    for i, ids in enumerate(prompts):
        assert results[i].token_ids == generate_ar(pair, ids, params).token_ids


def test_finished_requests_are_forgotten(pair):
    """A long-lived engine (the server's) keeps nothing per served request; ids may be reused
    once their request has finished, and branch indices stay unique."""
    engine = StepEngine(pair, "seed-batched")
    prompts = prompts_for(pair, 3, seed=6)
    for i, ids in enumerate(prompts):
        engine.add_request(i, ids, SamplingParams(max_new_tokens=5))
    engine.abort(2)
    first = drain(engine)
    assert sorted(first) == [0, 1, 2] and not engine.ids and not engine.request_of
    engine.add_request(0, prompts[0], SamplingParams(max_new_tokens=5))
    assert engine.ids[0].index == 3
    assert drain(engine)[0].token_ids == first[0].token_ids


# -- logprobs -------------------------------------------------------------------------------------
LOGPROB_TOL = 1e-5  # the engines score in float32 (`RaggedBatch.forward`): these are float64 ones


def target_logprobs(pair, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """[n, V] float64: log_softmax of the target's logits where each of `tokens` was emitted
    after `prompt` (one forward over prompt + tokens, computed here, not by an engine)."""
    ids = torch.tensor([prompt + tokens], device=pair.target.device)
    with torch.inference_mode():
        logits = pair.target(input_ids=ids).logits[0, len(prompt) - 1 : -1, : pair.vocab_size]
    return torch.log_softmax(logits.double(), -1).cpu()


def assert_logprobs(pair, prompt, result, k: int) -> None:
    expected = target_logprobs(pair, prompt, result.token_ids)
    assert len(result.logprobs) == len(result.token_ids)
    for j, (token, e) in enumerate(zip(result.token_ids, result.logprobs, strict=True)):
        assert e.token_id == token
        assert abs(e.logprob - float(expected[j, token])) < LOGPROB_TOL, j
        top = expected[j].topk(k)
        assert [i for i, _ in e.top] == top.indices.tolist(), j
        for (_, v), w in zip(e.top, top.values.tolist(), strict=True):
            assert abs(v - w) < LOGPROB_TOL, j


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_logprobs_are_the_targets_raw_log_softmax_for_every_method(pair, temperature):
    """Every emitted token's logprob and top-3 (accepted, recovered and bonus tokens alike) is
    the target's log_softmax where it was emitted, before temperature: for every method as for
    AR (coupled sampling at T > 0: the same tokens)."""
    prompts = prompts_for(pair, 2, seed=7)
    params = SamplingParams(
        temperature=temperature, seed=3, max_new_tokens=14, ignore_eos=True, logprobs=3
    )
    requests = [Request(ids, params) for ids in prompts]
    ar = generate_many(pair, requests, "ar").results
    for method in ("sd", "mcsd", "seed", "seed-batched", "batched-ar"):
        results = generate_many(pair, requests, method, SpecConfig(gamma=4)).results
        if method != "batched-ar":  # accepted draft tokens, then a recovered or bonus token
            assert sum(r.stats.accepted for r in results) > 0, method
        for prompt, ref, out in zip(prompts, ar, results, strict=True):
            assert out.token_ids == ref.token_ids, method
            assert_logprobs(pair, prompt, out, k=3)
            for a, b in zip(out.logprobs, ref.logprobs, strict=True):  # the same as AR's
                assert abs(a.logprob - b.logprob) < LOGPROB_TOL and a.token_id == b.token_id
    for prompt, ref in zip(prompts, ar, strict=True):
        assert_logprobs(pair, prompt, ref, k=3)


def test_logprobs_end_with_the_token_a_stop_string_ends_on(pair):
    """A stop string inside a round keeps one logprob per committed token; k=0 lists no
    alternatives."""
    [prompt] = prompts_for(pair, 1, seed=8)
    free = generate_ar(pair, prompt, SamplingParams(max_new_tokens=20, ignore_eos=True))
    stop = free.text[7:9]
    assert len(stop) == 2, free.text
    params = SamplingParams(max_new_tokens=20, ignore_eos=True, stop=(stop,), logprobs=0)
    for method in ("ar", "sd", "seed-batched"):
        [out] = generate_many(pair, [Request(prompt, params)], method).results
        assert out.finish_reason == "stop" and len(out.token_ids) < 20, method
        assert len(out.logprobs) == len(out.token_ids) and all(not e.top for e in out.logprobs)
        assert_logprobs(pair, prompt, out, k=0)


def test_logprobs_off_cost_nothing_and_hf_assisted_refuses_them(pair, monkeypatch):
    import seedtree.decoding.ar as ar
    import seedtree.decoding.branch as branch

    def never(*args):
        raise AssertionError("logprobs computed while off")

    monkeypatch.setattr(ar, "token_logprobs", never)
    monkeypatch.setattr(branch, "token_logprobs", never)
    [prompt] = prompts_for(pair, 1, seed=9)
    for method in ("ar", "seed-batched"):
        request = Request(prompt, SamplingParams(max_new_tokens=6))
        [out] = generate_many(pair, [request], method).results
        assert out.logprobs is None and "logprobs" not in out.to_dict()
    with pytest.raises(SeedtreeError, match="hf-assisted does not report logprobs"):
        generate_many(pair, [Request(prompt, SamplingParams(logprobs=0))], "hf-assisted")


# -- identical greedy requests decoded once (SpecConfig.dedup) ----------------------------------
def stream(engine: StepEngine) -> tuple[dict, dict]:
    """Runs the engine dry: each request's streamed tokens and its result."""
    streamed, results = {}, {}
    while engine.has_unfinished():
        for out in engine.step():
            streamed.setdefault(out.request_id, []).extend(out.new_token_ids)
            if out.finished:
                results[out.request_id] = out.result
    return streamed, results


def decoded_branches(engine: StepEngine) -> set[int]:
    return {b for iv in engine.trace.of_kind("verify") for b in iv.branches}


@pytest.mark.parametrize("method", ["seed-batched", "batched-ar-cached"])
def test_identical_greedy_requests_are_decoded_once(pair, method):
    """k samples of one prompt at T=0 (seeds differ, as the search sends them) and one other
    prompt: two branches decode; each copy streams and ends with AR's tokens, no work of its own."""
    same, other = prompts_for(pair, 2, seed=11)
    engine = StepEngine(pair, method, SpecConfig(gamma=4), PrefixCache())
    for j in range(3):
        engine.add_request(f"s{j}", same, SamplingParams(max_new_tokens=24, seed=j))
    engine.add_request("o", other, SamplingParams(max_new_tokens=24, seed=0))
    streamed, results = stream(engine)
    assert decoded_branches(engine) == {0, 3}  # the first sample and the other prompt
    ar = generate_ar(pair, same, SamplingParams(max_new_tokens=24)).token_ids
    for j in range(3):
        assert results[f"s{j}"].token_ids == streamed[f"s{j}"] == ar
        assert results[f"s{j}"].stats.copied == (j > 0)
    copy = results["s1"].stats
    assert copy.rounds == copy.target_forwards == copy.drafted == 0 and copy.new_tokens == len(ar)
    assert (
        results["o"].token_ids
        == generate_ar(pair, other, SamplingParams(max_new_tokens=24)).token_ids
    )
    assert not engine.leaders and not engine.following  # nothing kept once done


GREEDY = SamplingParams(max_new_tokens=12)


@pytest.mark.parametrize(
    ("method", "spec", "first", "second"),
    [
        ("seed-batched", SpecConfig(dedup=False), GREEDY, GREEDY),
        ("sd", SpecConfig(), GREEDY, GREEDY),  # serial: the paper's one-at-a-time baseline
        (  # T > 0, even with one seed
            "seed-batched",
            SpecConfig(),
            SamplingParams(temperature=0.8, max_new_tokens=12, seed=5),
            SamplingParams(temperature=0.8, max_new_tokens=12, seed=5),
        ),
        ("seed-batched", SpecConfig(), GREEDY, SamplingParams(max_new_tokens=12, stop=("a",))),
        ("seed-batched", SpecConfig(), GREEDY, SamplingParams(max_new_tokens=13)),
    ],
)
def test_requests_decode_on_their_own_unless_identical_and_greedy(
    pair, method, spec, first, second
):
    """Off, a serial method, T > 0 or other settings: both requests of one prompt decode."""
    [ids] = prompts_for(pair, 1, seed=12)
    engine = StepEngine(pair, method, spec)
    engine.add_request(0, ids, first)
    engine.add_request(1, ids, second)
    _, results = stream(engine)
    assert decoded_branches(engine) == {0, 1}
    assert not any(r.stats.copied for r in results.values())


def test_a_copy_joining_late_gets_every_token_so_far(pair):
    [ids] = prompts_for(pair, 1, seed=13)
    params = SamplingParams(max_new_tokens=30, ignore_eos=True, logprobs=2)
    engine = StepEngine(pair, "seed-batched")
    engine.add_request("first", ids, params)
    engine.step()
    engine.step()
    engine.add_request("late", ids, params)
    [late] = [o for o in engine.step() if o.request_id == "late"]
    assert late.new_token_ids == late.token_ids and len(late.token_ids) >= 2
    assert len(late.new_logprobs) == len(late.new_token_ids)
    _, results = stream(engine)
    first, copy = results["first"], results["late"]
    assert copy.token_ids == first.token_ids and copy.stats.copied
    assert copy.logprobs == first.logprobs and len(copy.logprobs) == 30


def test_aborting_the_decoded_request_keeps_its_copies_going(pair):
    [ids] = prompts_for(pair, 1, seed=14)
    params = SamplingParams(max_new_tokens=30, ignore_eos=True)
    engine = StepEngine(pair, "seed-batched")
    for j in range(3):
        engine.add_request(j, ids, params)
    engine.step()
    engine.step()
    assert len(engine.running) == 1 and engine.running_requests == 3
    assert engine.abort(0) and not engine.abort(0)
    assert engine.running_requests == 2
    [cancelled] = [o for o in engine.step() if o.request_id == 0]
    assert cancelled.finished and cancelled.result.finish_reason == "cancelled"
    assert cancelled.new_token_ids == []  # its tokens went out with the earlier steps
    assert engine.abort(1)
    _, results = stream(engine)
    assert results[1].finish_reason == "cancelled"
    assert results[2].token_ids == generate_ar(pair, ids, params).token_ids
    assert results[2].finish_reason == "length"


def test_aborting_every_request_of_a_branch_frees_it(pair):
    [ids] = prompts_for(pair, 1, seed=15)
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    engine = StepEngine(pair, "seed-batched")
    engine.add_request("a", ids, params)
    engine.add_request("b", ids, params)
    engine.step()
    branch = engine.ids["a"]
    assert engine.abort("a") and branch.p.length > 0  # still decoding for "b"
    assert engine.abort("b") and branch.p.length == 0 and branch not in engine.running
    _, results = stream(engine)
    assert {r: results[r].finish_reason for r in "ab"} == {"a": "cancelled", "b": "cancelled"}
    assert not engine.ids and not engine.following and not engine.followers


def test_dedup_option_is_checked():
    with pytest.raises(SeedtreeError, match="dedup"):
        SpecConfig(dedup="yes")


@pytest.mark.parametrize("method", ["seed-batched", "mcsd-batched", "sd", "batched-ar-cached"])
def test_the_verification_that_reads_the_prompt_is_prefill_time(pair, method):
    """A request's first verification also reads its prompt: its time is `prefill_s`, so
    `verify_s` is the verification of token trees alone (bench-decode's verify ms per round)."""
    ids = encode(pair, "prompt read by the first verification")
    one = generate_many(pair, [Request(ids, SamplingParams(max_new_tokens=1))], method).results[0]
    assert one.stats.rounds == 1 and one.stats.target_forwards == 1
    assert one.stats.prefill_s > 0 and one.stats.verify_s == 0
    params = SamplingParams(max_new_tokens=12, ignore_eos=True)
    more = generate_many(pair, [Request(ids, params)], method).results[0]
    assert more.stats.rounds > 1 and more.stats.verify_s > 0
