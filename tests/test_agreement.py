"""Every difference from `ar` explained (tiny models): identical trees say `yes`, a planted
non-argmax token is a `DEFECT` at its call, request and position, a forced exact tie of the
target's logits is a `tie`, and the replay in each method's scoring shape reproduces AR's scores."""

import pytest
import torch

from seedtree.bench.agreement import agreement
from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.check import Scoring, _ar_way, _replay, diagnose
from seedtree.engine import Request, generate_many
from seedtree.engine.methods import scoring_of
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.tasks import get_task

METHODS = ("batched-ar", "sd", "mcsd", "seed-batched", "hf-assisted")


def build(pair, method: str) -> Tree:
    task = get_task("gsm8k")
    search = SearchConfig(k=2, b=1, depth=1)
    return solve(pair, task, task.get(0), search, EngineConfig(method=method, max_new_tokens=8))


def planted(tree: Tree, call: int, request: int, position: int, token: int) -> Tree:
    """A copy of `tree` whose method emitted `token` at that position (and stopped there)."""
    other = Tree.from_dict(tree.to_dict())
    out = other.calls[call].output_ids[request]
    out[position] = token
    del out[position + 1 :]
    other.method, other.answer = "planted", other.answer + " (planted)"
    return other


def target_ranking(pair, prompt: list[int], prefix: list[int]) -> list[int]:
    """The target's tokens after prompt + prefix, best first (one full forward)."""
    with torch.inference_mode():
        logits = pair.target(torch.tensor([prompt + prefix])).logits[0, -1, : pair.vocab_size]
    return logits.argsort(descending=True).tolist()


@pytest.fixture(scope="module")
def pair():
    return tiny_pair(seed=0, context=4096)


@pytest.fixture(scope="module")
def ar_tree(pair):
    return build(pair, "ar")


def test_identical_trees_say_yes(pair, ar_tree):
    found = agreement(pair, "seed-batched", [([ar_tree], [build(pair, "seed-batched")])], Scoring())
    assert found.verdict == "yes" and found.label() == "yes" and not found.divergences
    assert found.to_dict()["compared"] == 1


@pytest.mark.parametrize("method", ["sd", "seed-batched", "mcsd"])
def test_planted_non_argmax_token_is_a_defect_at_its_position(pair, ar_tree, method):
    call, request, position = 1, 1, 2
    prompt = ar_tree.calls[call].prompt_ids[request]
    ar_ids = ar_tree.calls[call].output_ids[request]
    second = target_ranking(pair, prompt, ar_ids[:position])[1]  # the target ranks it 2nd
    other = planted(ar_tree, call, request, position, second)
    found = agreement(pair, method, [([ar_tree], [other])], scoring_of(method))
    assert found.verdict == "DEFECT" and found.label().startswith("DEFECT (gap ")
    (d,) = found.divergences
    assert (d.example_id, d.call, d.phase, d.request) == ("gsm8k-0", call, "evaluate", request)
    g = d.diagnosis
    assert (g.position, g.ar_token, g.other_token) == (position, ar_ids[position], second)
    assert g.ar_top2.tokens == (ar_ids[position], second)
    assert g.gap > max(g.noise, 1e-4) and not g.reproduced
    assert f"token {position}" in d.describe(pair.tokenizer, method)


def test_forced_exact_tie_is_a_tie(ar_tree):
    """Give a second token the lm_head row of AR's token at one position: the target's logits
    for the two are equal everywhere. AR keeps the lower id; a method emitting the twin is a
    tie (gap exactly 0), not a defect."""
    pair = tiny_pair(seed=0, context=4096)
    call, request, position = 1, 0, 2
    token = ar_tree.calls[call].output_ids[request][position]
    twin = pair.vocab_size - 1 if token != pair.vocab_size - 1 else pair.vocab_size - 2
    assert twin > token  # argmax keeps the first of equal logits: AR's output does not change
    with torch.no_grad():
        pair.target.lm_head.weight[twin] = pair.target.lm_head.weight[token]
    ar = build(pair, "ar")
    assert ar.calls[call].output_ids[request][position] == token
    other = planted(ar, call, request, position, twin)
    for method in ("sd", "seed-batched"):
        found = agreement(pair, method, [([ar], [other])], scoring_of(method))
        assert found.verdict == "tie", found.label()
        g = found.divergences[0].diagnosis
        assert g.gap == 0.0 and g.position == position and g.other_token == twin
        assert found.label().startswith("tie (gap 0 <= noise ")


def test_where_outputs_stop_differently_is_a_defect(pair, ar_tree):
    prompt, ar_ids = ar_tree.calls[0].prompt_ids[0], ar_tree.calls[0].output_ids[0]
    d = diagnose(pair, prompt, ar_ids, ar_ids[:-2])
    assert d.verdict == "DEFECT" and d.position == len(ar_ids) - 2 and d.other_token == -1
    assert "stops" in d.label()
    assert diagnose(pair, prompt, ar_ids, list(ar_ids)) is None


def test_trees_that_differ_with_equal_calls_are_a_defect(pair, ar_tree):
    other = Tree.from_dict(ar_tree.to_dict())
    other.answer += " (changed by the search)"
    (d,) = agreement(pair, "sd", [([ar_tree], [other])], scoring_of("sd")).divergences
    assert d.verdict == "DEFECT" and d.diagnosis is None and "same tokens" in d.label()


@pytest.mark.parametrize("method", METHODS)
def test_replay_in_each_shape_reproduces_ar_scores(pair, method):
    """Teacher-forced in its block/tree/batch shape at every alignment, the target scores AR's
    tokens as AR does (float64: to float32 rounding), so a real divergence's noise is real."""
    tok = pair.tokenizer
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("the answer is", "a b")]
    params = SamplingParams(max_new_tokens=14, ignore_eos=True)
    requests = [Request(p, params) for p in prompts]
    outputs = [r.token_ids for r in generate_many(pair, requests, "ar").results]
    positions = range(2, 12)
    reference = _ar_way(pair, prompts[1], outputs[1], positions)
    rows = [p + o for p, o in zip(prompts, outputs, strict=True)]
    scoring = scoring_of(method, gamma=3)
    for first in range(1, scoring.block + 1):
        logits = _replay(pair, rows, [len(p) for p in prompts], 1, scoring, first, positions)
        assert (logits - reference).abs().max() < 1e-5, (method, first)


def test_real_divergences_of_lossless_engines_are_ties():
    """In bfloat16 the engines part from AR at near-ties; each such divergence must be a tie."""
    pair = tiny_pair(seed=0, dtype=torch.bfloat16, init_std=0.05)
    tok = pair.tokenizer
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("abc def ghi", "once")]
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    requests = [Request(p, params) for p in prompts]
    ar = [r.token_ids for r in generate_many(pair, requests, "ar").results]
    batch = list(zip(prompts, ar, strict=True))
    verdicts = []
    for method in ("sd", "mcsd", "seed-batched"):
        results = generate_many(pair, requests, method, SpecConfig(gamma=4)).results
        for row, result in enumerate(results):
            d = diagnose(
                pair, prompts[row], ar[row], result.token_ids, scoring_of(method), batch, row
            )
            if d is not None:
                verdicts.append(d.verdict)
    assert verdicts and set(verdicts) == {"tie"}, verdicts


def test_top2_lists_equal_logits_in_argmax_order():
    from seedtree.decoding.check import Top2

    logits = torch.tensor([0.0, 2.0, 1.0, 2.0])
    assert Top2.of(logits).tokens == (1, 3) and int(logits.argmax()) == 1


def test_coupled_sampling_trees_agree_and_a_planted_token_is_a_defect(pair):
    """At T=0.7 with coupled sampling the trees are AR's (`yes`); a token the perturbed scores
    log p + g rank second is a DEFECT, diagnosed on those scores."""
    from seedtree.decoding.sampling import Sampler

    task = get_task("gsm8k")
    search = SearchConfig(k=2, b=1, depth=1)

    def engine(method):
        return EngineConfig(method=method, max_new_tokens=8, temperature=0.7, seed=1)

    ar = solve(pair, task, task.get(0), search, engine("ar"))
    other = solve(pair, task, task.get(0), search, engine("seed-batched"))
    scoring = scoring_of("seed-batched")
    assert agreement(pair, "seed-batched", [([ar], [other])], scoring).verdict == "yes"
    call, request = 1, 0
    c = ar.calls[call]
    prompt, ar_ids = c.prompt_ids[request], c.output_ids[request]
    position = min(2, len(ar_ids) - 1)
    sampler = Sampler(SamplingParams(temperature=0.7, seed=c.seeds[request]))
    with torch.inference_mode():
        ids = torch.tensor([prompt + ar_ids[:position]])
        logits = pair.target(ids).logits[0, -1, : pair.vocab_size]
    order = sampler.scores(logits, position).argsort(descending=True).tolist()
    assert order[0] == ar_ids[position]  # AR emitted the coupled argmax
    found = agreement(
        pair, "planted", [([ar], [planted(ar, call, request, position, order[1])])], scoring
    )
    assert found.verdict == "DEFECT"
    (d,) = found.divergences
    g = d.diagnosis
    assert (g.position, g.ar_token, g.other_token) == (position, ar_ids[position], order[1])
    assert g.ar_top2.tokens == (ar_ids[position], order[1])
    assert g.gap > max(g.noise, 1e-4) and not g.reproduced
