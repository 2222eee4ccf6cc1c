"""AR and SD on tiny float64 models: greedy equality, distribution equality, stopping rules."""

import random

import pytest
import torch
from conftest import encode
from scipy.stats import chisquare

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar
from seedtree.decoding.check import find_divergence
from seedtree.engine import generate_sd
from seedtree.models.tiny import CHARS


def random_prompts(n, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(1, 30))) for _ in range(n)]


@pytest.mark.parametrize("gamma", [1, 2, 4, 8])
def test_sd_greedy_equals_ar_greedy(pair, gamma):
    params = SamplingParams(max_new_tokens=48, ignore_eos=True)
    accepted = 0
    for prompt in random_prompts(12, seed=gamma):
        ids = encode(pair, prompt)
        ar = generate_ar(pair, ids, params)
        sd = generate_sd(pair, ids, params, SpecConfig(gamma))
        assert sd.token_ids == ar.token_ids, find_divergence(pair, ids, ar.token_ids, sd.token_ids)
        assert sd.text == ar.text and len(sd.token_ids) == 48
        assert sd.stats.accepted <= sd.stats.drafted
        accepted += sd.stats.accepted
    assert 0 < accepted  # drafts were accepted, and (alpha < 1 on this pair) rejected too


def test_sd_greedy_uses_fewer_target_forwards(pair):
    ids = encode(pair, "the sum of 12 and 30 is")
    params = SamplingParams(max_new_tokens=64, ignore_eos=True)
    sd = generate_sd(pair, ids, params, SpecConfig(4))
    assert 0 < sd.stats.alpha < 1
    assert sd.stats.target_forwards < 64
    # one forward per round: the prompt goes with the first round's tree, no prefill forward
    assert sd.stats.rounds == sd.stats.target_forwards


def test_eos_ends_both_engines_at_the_same_token(pair):
    params = SamplingParams(max_new_tokens=200)
    ended = 0
    for prompt in random_prompts(20, seed=7):
        ids = encode(pair, prompt)
        ar = generate_ar(pair, ids, params)
        sd = generate_sd(pair, ids, params, SpecConfig(4))
        assert sd.token_ids == ar.token_ids and sd.finish_reason == ar.finish_reason
        if ar.finish_reason == "stop":
            assert ar.token_ids[-1] in pair.eos_token_ids
            ended += 1
    assert ended > 0


def test_stop_string_ends_both_engines_at_the_same_token(pair):
    ids = encode(pair, "count: 1 2 3")
    free = generate_ar(pair, ids, SamplingParams(max_new_tokens=40, ignore_eos=True))
    stop = free.text[12:14]  # a string the greedy text reaches mid-way
    params = SamplingParams(max_new_tokens=40, ignore_eos=True, stop=(stop,))
    ar = generate_ar(pair, ids, params)
    for gamma in (1, 3, 8):
        sd = generate_sd(pair, ids, params, SpecConfig(gamma))
        assert sd.token_ids == ar.token_ids
    assert ar.finish_reason == "stop"
    assert ar.text == free.text[: free.text.find(stop)]
    assert len(ar.token_ids) < 40


def test_max_new_tokens_and_context_limit(pair):
    ids = encode(pair, "abc")
    for n in (1, 2, 5):
        for engine in (generate_ar, lambda *a: generate_sd(*a, SpecConfig(4))):
            r = engine(pair, ids, SamplingParams(max_new_tokens=n, ignore_eos=True))
            assert len(r.token_ids) == n and r.finish_reason == "length"
    long_prompt = [5] * (pair.max_context - 3)
    ar = generate_ar(pair, long_prompt, SamplingParams(max_new_tokens=50, ignore_eos=True))
    sd = generate_sd(pair, long_prompt, SamplingParams(max_new_tokens=50, ignore_eos=True))
    assert len(ar.token_ids) == len(sd.token_ids) == 3 and ar.token_ids == sd.token_ids


def test_same_seed_same_sample(pair):
    ids = encode(pair, "hello")
    params = SamplingParams(temperature=1.0, max_new_tokens=30, ignore_eos=True, seed=42)
    assert generate_sd(pair, ids, params).token_ids == generate_sd(pair, ids, params).token_ids
    assert generate_ar(pair, ids, params).token_ids == generate_ar(pair, ids, params).token_ids
    other = SamplingParams(temperature=1.0, max_new_tokens=30, ignore_eos=True, seed=43)
    assert generate_sd(pair, ids, other).token_ids != generate_sd(pair, ids, params).token_ids


@torch.inference_mode()
def target_marginals(pair, ids):
    """Exact target distributions at T=1 of the first token and (marginalised) the second."""
    logits = pair.target(torch.tensor([ids])).logits[0, -1, : pair.vocab_size]
    p1 = torch.softmax(logits.double(), -1)  # [V]
    v = pair.vocab_size
    batch = torch.tensor([ids + [t] for t in range(v)])  # [V, len+1]
    p2_given = torch.softmax(pair.target(batch).logits[:, -1, :v].double(), -1)  # [V, V]
    return p1, p1 @ p2_given


def chi2_pvalue(counts, probs, n):
    expected = probs * n
    big = expected >= 5  # pool the rare outcomes into one cell
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    return chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


def test_sd_sampling_matches_target_distribution(pair):
    """At T=1, SD's first and second tokens follow the target's distributions (chi-square)."""
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    n = 3000
    c1, c2 = torch.zeros(pair.vocab_size), torch.zeros(pair.vocab_size)
    rejected = 0
    for i in range(n):
        params = SamplingParams(
            temperature=1.0, max_new_tokens=2, ignore_eos=True, seed=i, sampling="speculative"
        )
        r = generate_sd(pair, ids, params, SpecConfig(2))
        c1[r.token_ids[0]] += 1
        c2[r.token_ids[1]] += 1
        rejected += r.stats.drafted - r.stats.accepted
    assert rejected > n // 10  # the rejection path was exercised
    assert chi2_pvalue(c1, p1, n) > 0.001
    assert chi2_pvalue(c2, p2, n) > 0.001
