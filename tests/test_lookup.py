"""Lookup drafting (issue #14) on tiny float64 models: candidates copied from text already written
are accepted where the target agrees and rejected where it does not; every method still emits
AR's tokens (T=0, and T>0 with coupled sampling); the first two tokens keep the target's
distribution; a sibling that runs after an identical one copies whole continuations."""

import pytest
import torch
from conftest import encode
from test_engines import chi2_pvalue, target_marginals
from test_many import prompts_for

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar, speculative
from seedtree.decoding.adaptive import lookup_length
from seedtree.decoding.branch import Branch
from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.tree import LOOKUP
from seedtree.engine import METHODS, Request, generate_many
from seedtree.errors import SeedtreeError

GREEDY = SamplingParams(max_new_tokens=24, ignore_eos=True)


# -- the index ---------------------------------------------------------------------------
def test_index_proposes_what_followed_the_longest_suffix():
    index = LookupIndex()
    index.register([1, 2, 3, 4, 5, 6, 7])
    index.register([9, 3, 4, 8, 8])  # a shorter match (3, 4), more recent
    doc = index.register([0, 2, 3, 4])
    assert index.propose(doc, 3) == [5, 6, 7]  # the 3-gram (2, 3, 4) wins over (3, 4)
    assert index.propose(doc, 1) == [5]
    assert index.propose(doc, 0) == []


def test_index_skips_the_suffix_itself_and_follows_growth():
    index = LookupIndex()
    tokens = [5, 6, 7, 5, 6]
    doc = index.register(tokens)
    assert index.propose(doc, 4) == [7, 5, 6]  # its own earlier text
    tokens += [1, 2]  # the branch commits: the index follows on the next lookup
    other = index.register([1, 2, 3])
    assert index.propose(other, 2) == []  # (1, 2) is followed by nothing else yet
    assert index.propose(doc, 2) == [3]


def test_index_memory_is_bounded():
    index = LookupIndex(max_tokens=50)
    live = index.register(list(range(100, 120)))
    for start in range(0, 200, 20):
        index.release(index.register(list(range(start, start + 20))))
    assert index.tokens <= 50 and live in index.docs


def test_lookup_length_keeps_probing_and_follows_acceptance():
    assert lookup_length(0.0, 8) == 1  # a branch that stopped proposing could not recover
    assert lookup_length(0.9, 8) == 8
    assert lookup_length(0.5, 8) == 3  # 0.5**4 < MIN_MARGINAL
    assert lookup_length(0.9, 0) == 0


def test_lookup_option_is_checked():
    with pytest.raises(SeedtreeError, match="lookup must be >= 0"):
        SpecConfig(lookup=-1)


# -- one round: accepted where the target agrees, rejected where not -----------------------
def one_round(pair, prompt, planted, params=GREEDY):
    """One draft + verify round of a branch (gamma 2, fixed) whose index holds `planted` right
    after the prompt: the lookup candidates are planted's first tokens."""
    spec = SpecConfig(gamma=2, adaptive=False, lookup=6)
    index = LookupIndex()
    index.register(prompt + planted)
    b = Branch(0, pair, Request(prompt, params), spec, (1, 1), "seed-batched")
    b.attach_lookup(index)
    speculative.prefill([b])
    speculative.draft([b])
    lookup_nodes = [n for n in range(1, len(b.tree)) if b.tree.sources[n] & LOOKUP]
    assert [b.tree.tokens[n] for n in lookup_nodes][:1] == planted[:1]
    speculative.verify([b])
    return b


def test_lookup_candidates_accepted_where_the_target_agrees(pair):
    prompt = encode(pair, "the cat sat on the mat and")
    ar = generate_ar(pair, prompt, GREEDY).token_ids
    b = one_round(pair, prompt, ar)
    # 6 candidates, the model's 2 among them at most: at least 4 came from lookup alone, all
    # accepted, then the bonus token
    assert b.stats.lookup_accepted == b.stats.lookup_drafted >= 4
    assert b.seq.generated == ar[: b.stats.accepted + 1] and b.stats.accepted == 6


def test_lookup_candidates_rejected_where_the_target_does_not(pair):
    prompt = encode(pair, "the cat sat on the mat and")
    ar = generate_ar(pair, prompt, GREEDY).token_ids
    wrong = [t for t in range(pair.vocab_size) if t != ar[0]][:6]
    b = one_round(pair, prompt, wrong)
    assert b.stats.lookup_drafted >= 1 and b.stats.lookup_accepted == 0
    assert b.seq.generated == ar[: len(b.seq.generated)]


# -- end to end: lossless for every method ---------------------------------------------
LOOKUP_SPEC = SpecConfig(gamma=3, k_config=(2, 1), lookup=6)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_with_lookup_emits_ar_tokens(pair, method, temperature):
    """Three requests, two of them one prompt (siblings): with lookup on, every method's tokens
    are AR's at T=0 and, with coupled sampling, at T=0.8 (same seeds)."""
    prompts = prompts_for(pair, 2, seed=31)
    prompts = [prompts[0], prompts[0], prompts[1]]
    requests = [
        Request(
            ids,
            SamplingParams(temperature=temperature, max_new_tokens=30, ignore_eos=True, seed=i),
        )
        for i, ids in enumerate(prompts)
    ]
    run = generate_many(pair, requests, method, LOOKUP_SPEC)
    for r, req in zip(run.results, requests, strict=True):
        assert r.error is None, r.error
        assert r.token_ids == generate_ar(pair, req.prompt_ids, req.params).token_ids, method
    if method in ("sd", "mcsd", "seed", "mcsd-seed", "seed-batched"):
        assert sum(r.stats.lookup_drafted for r in run.results) > 0, method
        assert run.stats.accepted_model + run.stats.accepted_lookup == sum(
            r.stats.accepted for r in run.results
        )
    else:  # methods without a draft model do not draft by lookup either
        assert run.stats.accepted_lookup == 0


def test_speculative_sampling_drafts_with_the_model_alone(pair):
    params = SamplingParams(
        temperature=1.0, max_new_tokens=20, ignore_eos=True, seed=1, sampling="speculative"
    )
    ids = encode(pair, "once upon a time")
    run = generate_many(pair, [Request(ids, params)] * 2, "seed-batched", LOOKUP_SPEC)
    assert all(r.stats.lookup_drafted == 0 for r in run.results)


def test_lookup_keeps_the_target_distribution(pair):
    """T=1 with coupled sampling and lookup on: the first and second tokens of seed-batched
    follow the target (chi-square); lookup candidates were verified and accepted."""
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    c1, c2 = torch.zeros(pair.vocab_size), torch.zeros(pair.vocab_size)
    n, lookup = 0, 0
    for call in range(125):  # 24 requests per call: one state, many thoughts
        requests = [
            Request(
                ids,
                SamplingParams(
                    temperature=1.0, max_new_tokens=6, ignore_eos=True, seed=24 * call + j
                ),
            )
            for j in range(24)
        ]
        run = generate_many(pair, requests, "seed-batched", SpecConfig(gamma=2, lookup=4))
        for r in run.results:
            c1[r.token_ids[0]] += 1
            c2[r.token_ids[1]] += 1
            n += 1
        lookup += run.stats.accepted_lookup
    assert lookup > 0
    assert chi2_pvalue(c1, p1, n) > 1e-3
    assert chi2_pvalue(c2, p2, n) > 1e-3


def test_a_later_sibling_copies_whole_continuations(pair):
    """k identical prompts at T=0 decoded one after another (`sd`): the first drafts with the
    model; the next ones find its finished output and accept whole lookup continuations."""
    ids = encode(pair, "one state, many thoughts")
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    spec = SpecConfig(gamma=3, lookup=8)
    run = generate_many(pair, [Request(ids, params)] * 3, "sd", spec)
    first, second, third = (r.stats for r in run.results)
    ar = generate_ar(pair, ids, params).token_ids
    assert all(r.token_ids == ar for r in run.results)
    assert second.lookup_accepted >= 20 and third.lookup_accepted >= 20
    assert second.rounds * 2 <= first.rounds
    assert (second.accepted + second.rounds) / second.rounds >= 5  # tokens per round
