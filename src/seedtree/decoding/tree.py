"""Token trees for multi-candidate speculative decoding (MCSD; Yang et al. 2024, SpecInfer).

A *token tree* is rooted at the pending token (the last committed token, not yet in the target's
cache). `k_config = (k_1, .., k_gamma)`: every node at depth d-1 gets k_d children, drawn from the
draft's distribution q at that node. Nodes are stored in level order; node 0 is the root.

Both models score a tree in one forward: every node attends to the cached prefix and to its own
ancestors (a *tree attention mask*), at position `root position + depth`. The target's logits at a
node are then exactly those of the root-to-node path run alone.

Verification walks the tree from the root. At T=0: follow the child equal to the target's argmax;
stop when there is none (emit the argmax: the recovered token) or at a leaf (the bonus token).
Coupled sampling (T>0) walks the same way with the target's coupled sample x_t in place of the
argmax (`sampling.Sampler`). Speculative sampling (T>0) keeps the target distribution with
multi-candidate speculative sampling: try the children in order, accept child x with probability
min(1, p(x)/q(x)); after a rejection p <- norm(max(0, p-q)), and, for candidates drawn without
replacement, q <- q with x removed, renormalised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from seedtree.decoding.sampling import Sampler, Verdict, probs_from_logits, sample

MODEL, LOOKUP = 1, 2  # who proposed a node: the draft model, lookup drafting (`lookup.py`)


@dataclass
class TokenTree:
    tokens: list[int]  # [N+1] node tokens, level order; tokens[0] is the root (pending token)
    parents: list[int]  # [N+1] parent index, -1 for the root
    depths: list[int]  # [N+1] 0 for the root
    children: list[list[int]] = field(default_factory=list)  # child indices per node
    q: dict[int, torch.Tensor] = field(default_factory=dict)  # node -> [V] draft probs (T > 0)
    sources: list[int] = field(default_factory=list)  # [N+1] MODEL | LOOKUP bits per node

    @classmethod
    def root(cls, token: int) -> TokenTree:
        return cls(tokens=[token], parents=[-1], depths=[0], children=[[]], sources=[0])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_drafted(self) -> int:
        return len(self.tokens) - 1

    def add_child(self, parent: int, token: int, source: int = MODEL) -> int:
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.children.append([])
        self.sources.append(source)
        self.children[parent].append(len(self.tokens) - 1)
        return len(self.tokens) - 1

    def merge_chain(self, tokens: list[int], source: int) -> None:
        """Add a chain of candidates below the root, sharing the nodes that already hold its
        prefix (e.g. a lookup continuation beside the draft model's chain)."""
        node = 0
        for token in tokens:
            child = next((c for c in self.children[node] if self.tokens[c] == token), None)
            if child is None:
                child = self.add_child(node, token, source)
            else:
                self.sources[child] |= source
            node = child

    def count(self, source: int, nodes: list[int] | None = None) -> int:
        """Nodes (of `nodes`, default all but the root) proposed by `source`."""
        nodes = range(1, len(self.tokens)) if nodes is None else nodes
        return sum(1 for n in nodes if self.sources[n] & source)

    def depth_of(self, source: int) -> int:
        """The deepest node proposed by `source` (0 if none)."""
        return max(
            (d for d, s in zip(self.depths, self.sources, strict=True) if s & source), default=0
        )

    def level(self, depth: int) -> list[int]:
        return [i for i, d in enumerate(self.depths) if d == depth]

    def path(self, node: int) -> list[int]:
        """Node indices from the first node below the root down to `node`."""
        out = []
        while node > 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]


def walk_greedy(tree: TokenTree, choice: Callable[[int], int]) -> tuple[list[int], Verdict]:
    """choice(node): the target's token after `node` (its argmax at T=0, its coupled sample x_t
    above). Follow the child equal to it. Returns (accepted path, verdict)."""
    node, path = 0, []
    while True:
        target = choice(node)
        child = next((c for c in tree.children[node] if tree.tokens[c] == target), None)
        if child is None:
            return path, Verdict(len(path), target)
        path.append(child)
        node = child


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """p, q [V] -> norm(max(0, p - q)): where a token is drawn from after a rejection. When a
    draw from q was rejected, p - q has positive mass; the guard is for round-off only."""
    r = (p - q).clamp_min(0.0)
    mass = r.sum()
    return r / mass if mass > 0 else p


def without(q: torch.Tensor, x: int) -> torch.Tensor:
    """q [V] with token x removed and renormalised: the distribution of the next candidate drawn
    without replacement."""
    q = q.clone()
    q[x] = 0.0
    mass = q.sum()
    return q / mass if mass > 0 else q


def walk_sampling(
    tree: TokenTree, p: torch.Tensor, replacement: bool, gen: torch.Generator
) -> tuple[list[int], Verdict]:
    """p [N+1, V]: target probabilities after each node. Multi-candidate speculative sampling."""
    node, path = 0, []
    while tree.children[node]:
        p_node, q_node = p[node].clone(), tree.q[node].clone()
        accepted = None
        for child in tree.children[node]:
            x = tree.tokens[child]
            r = torch.rand((), generator=gen, dtype=torch.float64)
            if r * q_node[x] <= p_node[x]:  # accept with probability min(1, p(x)/q(x))
                accepted = child
                break
            p_node = residual(p_node, q_node)
            if not replacement:
                q_node = without(q_node, x)
        if accepted is None:
            return path, Verdict(len(path), sample(p_node, gen))
        path.append(accepted)
        node = accepted
    return path, Verdict(len(path), sample(p[node], gen))


def walk(
    tree: TokenTree,
    logits: torch.Tensor,  # [N+1, V] target logits after each node
    sampler: Sampler,
    position: int,  # output position of the token after the root
    replacement: bool,
) -> tuple[list[int], Verdict]:
    """THE accept/reject rule of every engine (a chain is a tree of width 1; plain decoding a
    tree of one node): the accepted path of node indices and the recovered or bonus token."""
    assert logits.ndim == 2 and logits.shape[0] == len(tree)
    logits = logits.cpu()  # sampling draws on the CPU generator, whatever the device
    if sampler.params.greedy:
        argmax = logits.argmax(-1).tolist()
        return walk_greedy(tree, argmax.__getitem__)
    if sampler.coupled:  # x_t at the position after each node, computed along the path only
        return walk_greedy(tree, lambda n: sampler.token(logits[n], position + tree.depths[n]))
    probs = probs_from_logits(logits, sampler.params)
    return walk_sampling(tree, probs, replacement, sampler.gen)
