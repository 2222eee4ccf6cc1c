"""Coupled sampling (issue #13) on tiny float64 models: at T > 0 every method emits the tokens AR
emits with the same seed, token for token; AR's coupled samples follow the target distribution;
different seeds give independent samples. Each statistical check is shown to have power by a
planted bug (wrong noise, noise that ignores the seed)."""

import pytest
import torch
from conftest import encode
from scipy.stats import binomtest
from test_distribution import gof_pvalue
from test_engines import chi2_pvalue, target_marginals
from test_many import prompts_for

import seedtree.decoding.sampling as sampling_mod
from seedtree.decoding import SamplingParams, SpecConfig, generate_ar
from seedtree.decoding.check import find_divergence
from seedtree.decoding.sampling import Sampler, derive_seed, probs_from_logits
from seedtree.engine import METHODS, Request, expand_requests, generate_many

ALPHA = 1e-3  # a correct check fails when its p-value is below this
POWER = 1e-6  # a planted bug must push the p-value below this
SPEC = SpecConfig(gamma=4, k_config=(2, 2, 1))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("top_p", [1.0, 0.9])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_emits_ar_tokens(pair, method, temperature, top_p, n):
    prompts = prompts_for(pair, n, seed=17 + n)
    params = [
        SamplingParams(
            temperature=temperature, top_p=top_p, max_new_tokens=20, ignore_eos=True, seed=seed
        )
        for seed in range(100 * n, 100 * n + n)
    ]
    requests = [Request(ids, sp) for ids, sp in zip(prompts, params, strict=True)]
    expected = [generate_ar(pair, r.prompt_ids, r.params) for r in requests]
    run = generate_many(pair, requests, method, SPEC)
    for r, ar, req in zip(run.results, expected, requests, strict=True):
        assert r.error is None, r.error
        div = find_divergence(pair, req.prompt_ids, ar.token_ids, r.token_ids)
        assert div is None, (method, div)
    # sampled, not greedy: some request leaves the greedy output
    greedy = [
        generate_ar(pair, r.prompt_ids, SamplingParams(max_new_tokens=20, ignore_eos=True))
        for r in requests
    ]
    assert any(g.token_ids != ar.token_ids for g, ar in zip(greedy, expected, strict=True))
    drafted = sum(r.stats.drafted for r in run.results)
    accepted = sum(r.stats.accepted for r in run.results)
    if method not in ("ar", "batched-ar", "batched-ar-cached", "hf-assisted"):
        assert 0 < accepted < drafted, (accepted, drafted)  # both paths of the walk ran


def test_n_samples_of_one_prompt_equal_ar_with_their_seeds(pair):
    """`n` samples through the step engine: sample j is AR with the seed hashed from (seed, j)."""
    ids = encode(pair, "one state, many thoughts")
    params = SamplingParams(temperature=0.8, max_new_tokens=16, ignore_eos=True, seed=3, n=4)
    requests = expand_requests([ids], params)
    run = generate_many(pair, requests, "seed-batched", SPEC)
    samples = [r.token_ids for r in run.results]
    assert samples == [generate_ar(pair, ids, r.params).token_ids for r in requests]
    assert len({tuple(s) for s in samples}) == 4  # diverse thoughts


def first_two_counts(pair, ids, params, seeds):
    v = pair.vocab_size
    c1, c2 = torch.zeros(v), torch.zeros(v)
    for seed in seeds:
        out = generate_ar(pair, ids, SamplingParams(**{**params.__dict__, "seed": seed}))
        c1[out.token_ids[0]] += 1
        c2[out.token_ids[1]] += 1
    return c1, c2


N_SEEDS = 3000
T1 = SamplingParams(temperature=1.0, max_new_tokens=2, ignore_eos=True)


def test_coupled_ar_follows_the_target_distribution(pair):
    """AR with coupled sampling, one sample per seed: the first and second tokens follow the
    target's distributions (the second marginalised over the first), chi-square."""
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    c1, c2 = first_two_counts(pair, ids, T1, range(N_SEEDS))
    assert chi2_pvalue(c1, p1, N_SEEDS) > ALPHA
    assert chi2_pvalue(c2, p2, N_SEEDS) > ALPHA


def test_coupled_ar_follows_the_warped_distribution(pair):
    """T=0.5 and top-p 0.9: the first token follows p after temperature and nucleus; no token
    outside the nucleus is ever emitted."""
    ids = encode(pair, "the cat sat on")
    params = SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=2, ignore_eos=True)
    with torch.inference_mode():
        logits = pair.target(torch.tensor([ids])).logits[0, -1, : pair.vocab_size]
    p1 = probs_from_logits(logits, params)
    c1, _ = first_two_counts(pair, ids, params, range(N_SEEDS))
    assert float(c1[p1 == 0].sum()) == 0
    assert gof_pvalue(c1, p1) > ALPHA


def test_distribution_check_catches_wrong_noise(pair, monkeypatch):
    """Planted bug: Gumbel noise at half scale (as if the temperature were applied twice): the
    samples are those of T=0.5, and the chi-square against T=1 sees it."""
    original = sampling_mod.gumbel_noise

    def half(seed, position, vocab):
        return original(seed, position, vocab) / 2

    monkeypatch.setattr(sampling_mod, "gumbel_noise", half)
    ids = encode(pair, "what is 7*6?")
    p1, _ = target_marginals(pair, ids)
    c1, _ = first_two_counts(pair, ids, T1, range(N_SEEDS))
    assert chi2_pvalue(c1, p1, N_SEEDS) < POWER


def seed_pair_check(pair, seeds_of) -> tuple[float, int, int]:
    """First tokens of AR samples with two seeds each, over many seeds: the one-sided binomial
    p-value of them agreeing more often than independent draws from p do (sum p^2)."""
    ids = encode(pair, "what is 7*6?")
    p1, _ = target_marginals(pair, ids)
    matches, pairs = 0, 400
    for s in range(pairs):
        a, b = (
            generate_ar(pair, ids, SamplingParams(**{**T1.__dict__, "seed": seed})).token_ids[0]
            for seed in seeds_of(s)
        )
        matches += a == b
    rate = float((p1**2).sum())
    return float(binomtest(matches, pairs, rate, alternative="greater").pvalue), matches, pairs


def test_different_seeds_give_independent_samples(pair):
    pvalue, matches, pairs = seed_pair_check(pair, lambda s: (2 * s, 2 * s + 1))
    assert pvalue > ALPHA, f"seeds s and s+1 agree in {matches}/{pairs}"


def test_seed_check_catches_noise_that_ignores_the_seed(pair, monkeypatch):
    def seedless(seed, position, vocab):
        gen = torch.Generator().manual_seed(derive_seed("no seed", "gumbel", position))
        return -torch.log(-torch.log(torch.rand(vocab, generator=gen, dtype=torch.float64)))

    monkeypatch.setattr(sampling_mod, "gumbel_noise", seedless)
    pvalue, matches, pairs = seed_pair_check(pair, lambda s: (2 * s, 2 * s + 1))
    assert pvalue < POWER and matches == pairs


def test_noise_is_keyed_by_seed_and_position_only():
    """The same (seed, position) gives the same noise whatever else happened; any change of
    either gives other noise; derived seeds of nearby inputs are unrelated."""
    a = Sampler(SamplingParams(temperature=0.7, seed=5))
    b = Sampler(SamplingParams(temperature=0.7, seed=5))
    b.noise(9, 50)  # order of use does not matter
    assert torch.equal(a.noise(3, 50), b.noise(3, 50))
    assert not torch.equal(a.noise(3, 50), a.noise(4, 50))
    assert not torch.equal(a.noise(3, 50), Sampler(SamplingParams(seed=6)).noise(3, 50))
    a.forget(4)  # committed positions are dropped from the cache
    assert sorted(a._noise) == [4]
    seeds = {derive_seed(1, 0, i, j) for i in range(5) for j in range(5)}
    assert len(seeds) == 25 and all(0 <= s < 2**63 for s in seeds)


def test_speculative_mode_stays_available(pair):
    """`sampling="speculative"`: tokens depend on the method's draws (SD's differ from AR's for
    some seed), while coupled ones do not."""
    ids = encode(pair, "hello")
    differ = 0
    for seed in range(5):
        params = SamplingParams(
            temperature=1.0, max_new_tokens=12, ignore_eos=True, seed=seed, sampling="speculative"
        )
        ar = generate_ar(pair, ids, params).token_ids
        sd = generate_many(pair, [Request(ids, params)], "sd", SPEC).results[0].token_ids
        differ += ar != sd
    assert differ > 0
