"""The accept rule on chains (SD's case of `tree.walk`): hand-written accept/reject cases and a
distribution test."""

import pytest
import torch
from scipy.stats import chisquare

from seedtree.decoding.params import SamplingParams
from seedtree.decoding.sampling import probs_from_logits
from seedtree.decoding.tree import TokenTree, walk_greedy, walk_sampling


def chain(drafts, q=None) -> TokenTree:
    """A chain of draft tokens below a root; q [gamma, V]: the draft distribution at each."""
    tree, node = TokenTree.root(0), 0
    for i, x in enumerate(drafts):
        if q is not None:
            tree.q[node] = q[i]
        node = tree.add_child(node, x)
    return tree


def greedy_verify(p_argmax, drafts):
    return walk_greedy(chain(drafts), p_argmax.__getitem__)[1]


def speculative_verify(p, q, drafts, gen):
    return walk_sampling(chain(drafts, q), p, False, gen)[1]


def test_greedy_verify_accepts_matching_prefix_then_emits_target_argmax():
    v = greedy_verify([5, 6, 7, 8], [5, 6, 7])
    assert (v.n_accepted, v.token) == (3, 8)  # all accepted: bonus token
    v = greedy_verify([5, 9, 7, 8], [5, 6, 7])
    assert (v.n_accepted, v.token) == (1, 9)  # second rejected: recovered = target argmax
    v = greedy_verify([4, 6, 7, 8], [5, 6, 7])
    assert (v.n_accepted, v.token) == (0, 4)
    v = greedy_verify([3], [])
    assert (v.n_accepted, v.token) == (0, 3)  # gamma 0 is a plain target step


def one_hot(i, v=4):
    return torch.nn.functional.one_hot(torch.tensor(i), v).double()


def test_speculative_verify_accepts_when_p_equals_q():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.5, 0.5, 0, 0], [0.25] * 4, [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    q = p[:2].clone()
    for _ in range(200):
        v = speculative_verify(p, q, [0, 3], gen)
        assert v.n_accepted == 2  # p(x)/q(x) = 1: always accepted, then a bonus token from p[2]


def test_speculative_verify_rejects_token_target_never_emits():
    gen = torch.Generator().manual_seed(0)
    p = torch.stack([torch.tensor([0.0, 0.6, 0.4, 0.0], dtype=torch.float64), one_hot(2)])
    q = torch.stack([torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)])
    for _ in range(200):
        v = speculative_verify(p, q, [0], gen)
        # p(0) = 0: always rejected; recovered from norm(max(0, p - q)) = [0, .5/.8, .3/.8, 0]
        assert v.n_accepted == 0 and v.token in (1, 2)


def test_speculative_verify_bonus_token_comes_from_last_target_row():
    gen = torch.Generator().manual_seed(0)
    p = torch.stack([one_hot(1), one_hot(2), one_hot(3)])
    q = torch.stack([one_hot(1), one_hot(2)])
    v = speculative_verify(p, q, [1, 2], gen)
    assert (v.n_accepted, v.token) == (2, 3)


def test_speculative_verify_output_follows_p():
    """The first emitted token must be distributed as p[0], whatever q is."""
    gen = torch.Generator().manual_seed(1234)
    p0 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    q0 = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    p = torch.stack([p0, torch.full((4,), 0.25, dtype=torch.float64)])
    counts = torch.zeros(4)
    n = 8000
    for _ in range(n):
        x = int(torch.multinomial(q0, 1, generator=gen))
        v = speculative_verify(p, q0[None], [x], gen)
        counts[x if v.n_accepted == 1 else v.token] += 1
    assert chisquare(counts.numpy(), (p0 * n).numpy()).pvalue > 0.01


def test_top_p_keeps_smallest_prefix_reaching_mass():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = probs_from_logits(logits, SamplingParams(temperature=1.0, top_p=0.8))
    assert probs.tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0])
    probs = probs_from_logits(logits, SamplingParams(temperature=1.0, top_p=0.1))
    assert probs.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_temperature_sharpens():
    logits = torch.tensor([1.0, 2.0])
    hot = probs_from_logits(logits, SamplingParams(temperature=2.0))
    cold = probs_from_logits(logits, SamplingParams(temperature=0.5))
    assert cold[1] > hot[1] > 0.5
