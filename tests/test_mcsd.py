"""MCSD on tiny float64 models: tree-masked scoring, greedy equality, distribution equality."""

import random

import pytest
import torch
from conftest import encode
from scipy.stats import chisquare
from test_engines import chi2_pvalue, target_marginals

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar, generate_mcsd
from seedtree.decoding.batch import RaggedBatch
from seedtree.decoding.check import find_divergence
from seedtree.decoding.kv import KVSequence
from seedtree.decoding.tree import TokenTree, walk_sampling
from seedtree.errors import SeedtreeError
from seedtree.models.tiny import CHARS


def random_tree(rng, root, k_config, vocab):
    tree = TokenTree.root(root)
    frontier = [0]
    for k in k_config:
        frontier = [tree.add_child(n, rng.randrange(vocab)) for n in frontier for _ in range(k)]
    return tree


@pytest.mark.parametrize("k_config", [(2, 1, 1), (2, 2, 1), (3, 2)])
@pytest.mark.parametrize("rows", [1, 3])
def test_tree_masked_forward_equals_each_path_alone(pair, k_config, rows):
    """One ragged batched forward over token trees (rows with different prefix lengths) scores
    every node exactly as its root-to-node path run alone."""
    rng = random.Random(sum(k_config))
    prompts = [encode(pair, "tree attention check"[: 20 - 5 * r]) for r in range(rows)]
    trees = [random_tree(rng, p[-1], k_config, pair.vocab_size) for p in prompts]
    for model in (pair.target, pair.draft):
        seqs = [KVSequence(model, pair.vocab_size) for _ in prompts]
        for seq, prompt in zip(seqs, prompts, strict=True):
            seq.forward(prompt[:-1])
        batch = RaggedBatch(seqs)
        logits = batch.forward({r: (t.tokens, t.parents) for r, t in enumerate(trees)})
        for r, (prompt, tree) in enumerate(zip(prompts, trees, strict=True)):
            for node in range(len(tree)):
                path_ids = prompt + [tree.tokens[i] for i in tree.path(node)]
                alone = KVSequence(model, pair.vocab_size).forward(path_ids)[-1]
                assert (logits[r][node] - alone).abs().max() < 1e-9


K_CONFIGS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (3, 1)]


@pytest.mark.parametrize("k_config", K_CONFIGS)
def test_mcsd_greedy_equals_ar_greedy(pair, k_config):
    rng = random.Random(len(k_config) * 10 + k_config[0])
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    for _ in range(10):
        prompt = "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 30)))
        ids = encode(pair, prompt)
        ar = generate_ar(pair, ids, params)
        mc = generate_mcsd(pair, ids, params, SpecConfig(k_config=k_config))
        assert mc.token_ids == ar.token_ids, find_divergence(pair, ids, ar.token_ids, mc.token_ids)
        assert mc.stats.accepted <= mc.stats.drafted
        assert mc.stats.drafted <= mc.stats.rounds * SpecConfig(k_config=k_config).tree_nodes


def test_wider_tree_needs_fewer_rounds(pair):
    ids = encode(pair, "the cat sat on the")
    params = SamplingParams(max_new_tokens=60, ignore_eos=True)
    narrow = generate_mcsd(pair, ids, params, SpecConfig(k_config=(1, 1, 1)))
    wide = generate_mcsd(pair, ids, params, SpecConfig(k_config=(3, 2, 1)))
    assert wide.token_ids == narrow.token_ids
    assert wide.stats.rounds < narrow.stats.rounds


@pytest.mark.parametrize("replacement", [True, False])
def test_walk_sampling_first_token_follows_p(replacement):
    """One node, k=3 candidates drawn from q: the emitted token must be distributed as p."""
    gen = torch.Generator().manual_seed(7)
    p0 = torch.tensor([0.05, 0.15, 0.3, 0.1, 0.4], dtype=torch.float64)
    q0 = torch.tensor([0.4, 0.3, 0.1, 0.15, 0.05], dtype=torch.float64)
    counts = torch.zeros(5)
    n = 6000
    for _ in range(n):
        tree = TokenTree.root(0)
        tree.q[0] = q0
        for x in torch.multinomial(q0, 3, replacement=replacement, generator=gen).tolist():
            tree.add_child(0, x)
        p = torch.stack([p0] + [torch.full((5,), 0.2, dtype=torch.float64)] * 3)
        path, verdict = walk_sampling(tree, p, replacement, gen)
        counts[tree.tokens[path[0]] if path else verdict.token] += 1
    assert chisquare(counts.numpy(), (p0 * n).numpy()).pvalue > 0.01


@pytest.mark.parametrize("replacement", [True, False])
def test_mcsd_sampling_matches_target_distribution(pair, replacement):
    ids = encode(pair, "what is 7*6?")
    p1, p2 = target_marginals(pair, ids)
    n = 2500
    c1, c2 = torch.zeros(pair.vocab_size), torch.zeros(pair.vocab_size)
    spec = SpecConfig(k_config=(3, 1), replacement=replacement)
    rejected = 0
    for i in range(n):
        params = SamplingParams(
            temperature=1.0, max_new_tokens=2, ignore_eos=True, seed=i, sampling="speculative"
        )
        r = generate_mcsd(pair, ids, params, spec)
        c1[r.token_ids[0]] += 1
        c2[r.token_ids[1]] += 1
        rejected += r.stats.accepted == 0
    assert rejected > n // 20
    assert chi2_pvalue(c1, p1, n) > 0.001
    assert chi2_pvalue(c2, p2, n) > 0.001


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"k_config": ()}, "k_config is empty"),
        ({"k_config": (2, 0, 1)}, "k_config entries must be >= 1"),
        ({"k_config": (-1,)}, "k_config entries must be >= 1"),
    ],
)
def test_bad_k_config(kwargs, needle):
    with pytest.raises(SeedtreeError, match=needle):
        SpecConfig(**kwargs)


def test_tree_too_big_for_context(pair):
    ids = [5] * (pair.max_context - 10)
    with pytest.raises(SeedtreeError, match="drafts 28 tree nodes per round"):
        generate_mcsd(pair, ids, SamplingParams(max_new_tokens=5), SpecConfig(k_config=(4, 2, 2)))
