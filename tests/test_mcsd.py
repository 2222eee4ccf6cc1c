"""MCSD on tiny float64 models: tree-masked scoring, greedy equality, distribution equality."""

import random

import pytest
import torch
from conftest import encode
from scipy.stats import chisquare
from test_engines import chi2_pvalue, target_marginals

from seedtree.decoding import SamplingParams, SpecConfig, generate_ar
from seedtree.decoding.batch import RaggedBatch
from seedtree.decoding.check import find_divergence
from seedtree.decoding.kv import KVSequence
from seedtree.decoding.speculative import greedy_width
from seedtree.decoding.tree import TokenTree, walk_sampling
from seedtree.engine import Request, generate_many, generate_mcsd
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


def test_ragged_forward_keeps_only_the_logits_asked_for(pair):
    """`keep="last"` gives each ragged row the logits after its own last node, `keep={row: n}`
    after its last n, `keep="none"` none (a prefill); all leave the same caches as `keep="all"`,
    which the next forward reads."""
    prompts = [encode(pair, text) for text in ("a longer first prompt", "short", "mid length")]
    chains = {r: (ids, list(range(-1, len(ids) - 1))) for r, ids in enumerate(prompts)}
    tails = {0: 2, 1: 5, 2: 1}
    caches = {}
    for keep in ("all", "last", "none", tails):
        seqs = [KVSequence(pair.target, pair.vocab_size) for _ in prompts]
        batch = RaggedBatch(seqs)
        logits = batch.forward(chains, keep=keep)
        for r, ids in enumerate(prompts):
            batch.commit(r, list(range(len(ids))))
        caches[str(keep)] = [seq.forward([5])[-1] for seq in seqs]  # the next token, from each
        if keep == "all":
            full = logits
            assert [tuple(logits[r].shape) for r in chains] == [
                (len(ids), pair.vocab_size) for ids in prompts
            ]
        elif keep == "last":
            for r in chains:
                assert logits[r].shape == (1, pair.vocab_size)
                assert (logits[r][0] - full[r][-1]).abs().max() < 1e-12
        elif keep == "none":
            assert logits == {}
        else:
            for r, n in tails.items():
                assert logits[r].shape == (n, pair.vocab_size)
                assert (logits[r] - full[r][-n:]).abs().max() < 1e-12
    for keep in ("last", "none", str(tails)):
        for a, b in zip(caches["all"], caches[keep], strict=True):
            assert (a - b).abs().max() < 1e-12
    with pytest.raises(AssertionError):
        RaggedBatch([KVSequence(pair.target, pair.vocab_size)]).forward({0: ([1], [-1])}, "some")


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


def test_greedy_width_stops_once_the_candidates_hold_the_mass():
    logits = torch.tensor([0.70, 0.20, 0.06, 0.04]).log()  # q's probabilities, best first
    assert greedy_width(logits, 3, 0.6) == 1  # the first holds 0.70
    assert greedy_width(logits, 3, 0.8) == 2  # 0.70 < 0.8 <= 0.90
    assert greedy_width(logits, 3, 0.95) == 3  # 0.96 >= 0.95 with the third
    assert greedy_width(logits, 2, 0.99) == 2  # never more than k_config allows
    assert greedy_width(logits[[3, 1, 0, 2]], 3, 0.6) == 1  # by probability, not by index


@pytest.mark.parametrize("method", ["mcsd", "mcsd-batched"])
def test_tree_mass_prunes_trees_and_keeps_greedy_output(pair, method):
    """T=0 token trees that give a node only the candidates holding `tree_mass` of q: output
    equal to AR's token for token, fewer nodes drafted than full k_config trees."""
    rng = random.Random(11)
    params = SamplingParams(max_new_tokens=30, ignore_eos=True)
    drafted = {}
    for mass in (1.0, 0.5):
        spec = SpecConfig(k_config=(3, 2, 1), tree_mass=mass, adaptive=False)
        drafted[mass] = 0
        for _ in range(6):
            ids = encode(pair, "".join(rng.choice(CHARS) for _ in range(rng.randint(2, 25))))
            out = generate_many(pair, [Request(ids, params)], method, spec).results[0]
            ar = generate_ar(pair, ids, params)
            divergence = find_divergence(pair, ids, ar.token_ids, out.token_ids)
            assert out.token_ids == ar.token_ids, divergence
            drafted[mass] += out.stats.drafted
    assert drafted[0.5] < drafted[1.0]


def test_tree_mass_leaves_sampled_trees_alone(pair):
    """At T > 0 the tree keeps k_config's shape (the speculative rule needs its candidate
    count fixed): the same draws, the same tokens as with tree_mass 1."""
    ids = encode(pair, "sampled tree")
    params = SamplingParams(temperature=1.0, max_new_tokens=20, ignore_eos=True, seed=3)
    outs = [
        generate_many(
            pair, [Request(ids, params)], "mcsd-batched", SpecConfig(tree_mass=m)
        ).results[0]
        for m in (1.0, 0.3)
    ]
    assert outs[0].token_ids == outs[1].token_ids and outs[0].stats.drafted == outs[1].stats.drafted


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, True, "0.8"])
def test_tree_mass_is_checked(bad):
    with pytest.raises(SeedtreeError, match="tree_mass must be"):
        SpecConfig(tree_mass=bad)
