"""The one speculative core: prefill, draft and verify any set of branches, batched.

    prefill(branches)   each prompt (minus its pending token) into the draft's cache, ONE forward
                        for all (only for branches the batch plan lets draft); identical prompts
                        are computed once, for both models, and so is a long prefix that prompts
                        admitted together share (a tree's value prompts); the target sees a
                        branch's own rest of its prompt with its first verification
    draft(branches)     q grows each branch's token tree: ONE draft forward per tree level for all
                        branches (level 0 also feeds what the draft has not seen yet; a branch
                        far behind, e.g. a prompt never prefilled, catches up in a forward of
                        its own first)
    verify(branches)    ONE target forward over every branch's tree (a branch's first one also
                        feeds the prompt the target has not seen, apart from branches already
                        running), then the accept rule (`tree.walk`) and the commit, per branch

Serial SD is `draft([b]); verify([b])` (the step engine with one request at a time); SEED's
drafter threads call `draft([b])` and its verifier `verify([...])`; the step engine calls both
on every running branch. A batch that fails is redone branch by branch, so only a failing
branch fails (`run_isolated`). Given the measured `CostModel`, rows that read prompts of very
different lengths are fed in the forwards that cost least (`batch.width_groups`): a batch pads
every row to its widest.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import torch

from seedtree.decoding.adaptive import CostModel
from seedtree.decoding.batch import RaggedBatch, chain, common_length, width_groups
from seedtree.decoding.branch import Branch
from seedtree.decoding.kv import KVSequence
from seedtree.decoding.sampling import probs_from_logits
from seedtree.decoding.tree import LOOKUP, TokenTree, walk

# a prefix shared by prompts admitted together is fed once when it is at least this long beyond
# what their caches hold: shorter ones are not worth the forward of their own it costs
MIN_SHARED = 32


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def run_isolated(step: Callable[[list[Branch]], None], branches: list[Branch]) -> None:
    """Run `step` on all branches at once; if that fails, on each alone: a branch that fails on
    its own gets the error, the others go on. `step` commits nothing before it has succeeded."""
    if not branches:
        return
    try:
        step(branches)
        return
    except Exception as exc:
        if len(branches) == 1:
            branches[0].fail(_error(exc))
            return
    for b in branches:
        try:
            step([b])
        except Exception as exc:
            b.fail(_error(exc))


# A forward's price on this machine: (rows, width, context) -> seconds (`CostModel.target` for
# the target, `CostModel.draft_chain` for the draft); None: no cost model, every row in one.
Price = Callable[[int, int, int], float]


def forwards(widths: list[int], contexts: list[int], price: Price | None) -> list[list[int]]:
    """The rows of one feed (new tokens `widths`, cached `contexts`) split into the forwards
    that cost least by `price`: one forward for all of them without a price."""
    if price is None or len(widths) < 2:
        return [list(range(len(widths)))]
    context = max(contexts)
    return width_groups(widths, lambda rows, width: price(rows, width, context))


def _prefill_model(
    seqs: list[KVSequence], todo: list[list[int]], price: Price | None = None
) -> None:
    """Feed each sequence its tokens as a chain: ONE forward for all of them, or the cheapest
    split by `price` where their lengths differ much."""
    rows = [i for i, ids in enumerate(todo) if ids]
    widths, contexts = [len(todo[i]) for i in rows], [seqs[i].length for i in rows]
    for group in forwards(widths, contexts, price) if rows else []:
        fed = [rows[g] for g in group]
        batch = RaggedBatch([seqs[i] for i in fed])
        batch.forward({r: (todo[i], chain(len(todo[i]))) for r, i in enumerate(fed)}, keep="none")
        for r, i in enumerate(fed):
            batch.commit(r, list(range(len(todo[i]))))


def prices(costs: CostModel | None) -> tuple[Price | None, Price | None]:
    """(target's, draft's) price of a forward, from the measured costs (None, None: unknown)."""
    return (None, None) if costs is None else (costs.target, costs.draft_chain)


def prefill(branches: list[Branch], share: bool = True, costs: CostModel | None = None) -> None:
    """Bring the draft's cache up to the prompt minus its pending token (after whatever prefix
    it already holds, e.g. from the prefix cache), for branches that may draft: a branch the
    engine's batch plan gives depth 0 (`planned_depth == 0`) skips it, and catches up in `draft`
    if it ever drafts. The target's prompt is fed with the branch's first verification (one
    forward fewer per request: the prompt and the first token tree go together) unless `share`
    finds other branches with the same prompt and cached state: then both caches are computed
    once here and the others copy the KV (one state, many thoughts). With `share`, distinct
    prompts that share a prefix of `MIN_SHARED` tokens or more beyond what they hold get that
    prefix once, copied (`share_prefixes`), in both models' caches. `costs`: forwards over
    prompts of very different lengths are split where that is cheaper."""
    t = time.perf_counter()
    p_price, q_price = prices(costs)
    groups: dict[tuple, list[Branch]] = {}
    for b in branches:
        key = (tuple(b.seq.tokens), b.p.length, b.q.length if b.q else -1)
        groups.setdefault(key if share else (id(b),), []).append(b)
    if share:
        leaders = [g[0] for g in groups.values()]
        share_prefixes([b.p for b in leaders], [b.seq.tokens[:-1] for b in leaders], p_price)
        drafting = [g[0] for g in groups.values() if _drafts(g)]
        share_prefixes([b.q for b in drafting], [b.seq.tokens[:-1] for b in drafting], q_price)
    shared = [g[0] for g in groups.values() if len(g) > 1]
    todo = [b.seq.tokens[b.p.length : -1] for b in shared]
    _prefill_model([b.p for b in shared], todo, p_price)
    drafting = [g[0] for g in groups.values() if _drafts(g)]
    todo = [b.seq.tokens[b.q.length : -1] for b in drafting]
    _prefill_model([b.q for b in drafting], todo, q_price)
    for leader, *rest in groups.values():
        for b in rest:  # KV copy: one prompt's caches into another branch
            b.p.copy_from(leader.p)
            if b.q is not None:
                b.q.copy_from(leader.q)
    elapsed = time.perf_counter() - t
    for b in branches:
        b.stats.prefill_s += elapsed / len(branches)


def _drafts(group: list[Branch]) -> bool:
    """Whether a group of branches with one prompt needs the prompt in the draft's cache."""
    return group[0].q is not None and any(b.planned_depth != 0 for b in group)


def share_prefixes(
    seqs: list[KVSequence], prompts: list[list[int]], price: Price | None = None
) -> None:
    """Prompts admitted together that share a prefix longer than what their caches hold (by
    `MIN_SHARED` tokens or more): the prefix is fed once, into one of them, and the others copy
    its KV; the rests are fed as before. Level by level: sorted prompts are cut into runs whose
    common prefix is that much longer than any member holds; each run of two or more gets its
    common prefix (ONE forward for every run of a level); the runs are then cut again past it
    (prompts that share even more, e.g. a tree's value prompts under one problem), until no
    run is left."""
    runs = [sorted(range(len(seqs)), key=lambda i: prompts[i])] if seqs else []
    while found := [cut for run in runs for cut in _runs(run, seqs, prompts)]:  # (run, common)
        feeds = [prompts[run[0]][seqs[run[0]].length : common] for run, common in found]
        _prefill_model([seqs[run[0]] for run, _ in found], feeds, price)
        for run, _ in found:
            for i in run[1:]:  # KV copy: the common prefix into the others
                seqs[i].copy_from(seqs[run[0]])
        runs = [run for run, _ in found]


def _runs(order: list[int], seqs: list[KVSequence], prompts: list[list[int]]):
    """`order` (sorted prompts) cut into runs whose common prefix is `MIN_SHARED` tokens or
    more longer than any member's cache: those of two or more, each with that prefix's length
    (in sorted order, the common prefix of a run is the least one of neighbours)."""
    out: list[tuple[list[int], int]] = []
    run, common, held = [order[0]], len(prompts[order[0]]), seqs[order[0]].length
    for prev, i in itertools.pairwise(order):
        n = min(common, common_length([prompts[prev], prompts[i]]))
        if n - max(held, seqs[i].length) >= MIN_SHARED:
            run, common, held = [*run, i], n, max(held, seqs[i].length)
            continue
        if len(run) > 1:
            out.append((run, common))
        run, common, held = [i], len(prompts[i]), seqs[i].length
    if len(run) > 1:
        out.append((run, common))
    return out


# -- draft --------------------------------------------------------------------------------------
def greedy_width(logits: torch.Tensor, k: int, mass: float) -> int:
    """Candidates worth verifying below a node at T=0 (`SpecConfig.tree_mass`): q's top ones,
    at most k, until they hold `mass` of q's probability there. Where q is sure one candidate
    is enough; where it hesitates, its runners-up are the target's likely choice."""
    top = logits.topk(k).values.double()  # [k]
    covered = (top - torch.logsumexp(logits.double(), -1)).exp().cumsum(0)  # [k]
    return min(k, int((covered < mass).sum()) + 1)


def _expand(b: Branch, node: int, logits: torch.Tensor, k: int) -> bool:
    """Add k children below `node`, drawn from q (logits [V]) there. Returns whether drafting
    may go deeper (a chain stops where q's probability of its token is below min_draft_prob)."""
    spec = b.spec
    logits = logits.cpu()  # the draft's draws use the branch's CPU generator
    position = b.position + b.tree.depths[node]
    if k > 1 and spec.tree_mass < 1 and b.params.greedy:
        k = greedy_width(logits, k, spec.tree_mass)
    children, probs = b.sampler.candidates(logits, k, position, spec.replacement)
    if probs is not None:
        b.tree.q[node] = probs
    for token in children:
        b.tree.add_child(node, token)
    if spec.min_draft_prob <= 0 or k > 1:
        return True
    if probs is None:  # q's probability of its token (after temperature and top-p; T=0: T=1)
        greedy = b.params.greedy
        probs = (
            torch.softmax(logits.double(), -1) if greedy else probs_from_logits(logits, b.params)
        )
    return float(probs[children[0]]) >= spec.min_draft_prob


def _draft(branches: list[Branch], price: Price | None = None) -> None:
    shapes = [b.round_shape() for b in branches]
    catch_up([b for b, shape in zip(branches, shapes, strict=True) if shape], price)
    t = time.perf_counter()
    proposals = [b.lookup_proposal() for b in branches]  # free candidates (lookup drafting)
    for b in branches:  # a fresh tree: the root alone where the branch drafts nothing
        b.tree = TokenTree.root(b.seq.tokens[-1])
        b.q_base, b.q_fed = (b.q.length if b.q is not None else 0), 0
    rows = [i for i, shape in enumerate(shapes) if shape]
    if rows:
        _draft_trees([branches[i] for i in rows], [shapes[i] for i in rows])
    for b, proposal in zip(branches, proposals, strict=True):
        b.tree.merge_chain(proposal, LOOKUP)  # after the model's nodes: they keep 1..q_fed
    elapsed = time.perf_counter() - t
    for i in rows:
        branches[i].stats.draft_s += elapsed / len(rows)


def lag(b: Branch) -> int:
    """Committed tokens the draft must read before it can draft for b beyond what a round
    leaves unseen (accepted tokens plus the bonus): a prompt it skipped, or text generated while
    the batch plan kept it from drafting. 0 for a branch without a draft."""
    if b.q is None:
        return 0
    return max(0, len(b.seq.tokens) - b.q.length - (len(b.shape) + 2))


def catch_up(branches: list[Branch], price: Price | None = None) -> None:
    """Feed each lagging branch's draft what it has not seen but the pending token, in ONE
    forward of their own (prefill time): beside the others, a long row would pad every row of
    level 0. `price`: the draft's, to split rows of very different lags."""
    behind = [b for b in branches if lag(b)]
    if not behind:
        return
    t = time.perf_counter()
    _prefill_model([b.q for b in behind], [b.unseen()[:-1] for b in behind], price)
    elapsed = time.perf_counter() - t
    for b in behind:
        b.stats.prefill_s += elapsed / len(behind)


def _draft_trees(branches: list[Branch], shapes: list[tuple[int, ...]]) -> None:
    """Grow each branch's tree level by level: one batched draft forward per level. Nothing is
    committed to a branch's caches or generator before every forward has succeeded."""
    batch = RaggedBatch([b.q for b in branches])
    unseen = [b.unseen() for b in branches]
    states = [b.sampler.gen.get_state() for b in branches]
    try:
        # level 0: the committed tokens q has not seen (a chain ending at the root), then q there
        chains = {r: (ids, chain(len(ids))) for r, ids in enumerate(unseen)}
        logits = batch.forward(chains, keep="last")  # row -> [1, V]
        going = {r for r, b in enumerate(branches) if _expand(b, 0, logits[r][-1], shapes[r][0])}
        for depth in range(1, max(len(s) for s in shapes)):
            feeds = {}
            for r in sorted(going):
                if depth < len(shapes[r]):
                    tree, root = branches[r].tree, len(unseen[r]) - 1  # batch node of the root
                    nodes = tree.level(depth)
                    feeds[r] = (
                        [tree.tokens[n] for n in nodes],
                        [root + tree.parents[n] for n in nodes],
                    )
            if not feeds:
                break
            logits = batch.forward(feeds)
            for r, out in logits.items():
                b, nodes = branches[r], branches[r].tree.level(depth)
                deeper = [_expand(b, n, out[j], shapes[r][depth]) for j, n in enumerate(nodes)]
                if not all(deeper):
                    going.discard(r)
    except Exception:
        for b, state in zip(branches, states, strict=True):  # undo the draws; a retry redrafts
            b.sampler.gen.set_state(state)
        raise
    # every fed node stays in q's cache until verification says which survive
    for r, b in enumerate(branches):
        fed = len(batch.cols[r])
        b.q_base = batch.prefix[r] + len(unseen[r])
        b.q_fed = fed - len(unseen[r])
        batch.commit(r, list(range(fed)))


def draft(branches: list[Branch], costs: CostModel | None = None) -> None:
    """This round's token tree for every branch (the root alone where it drafts nothing)."""
    price = prices(costs)[1]
    run_isolated(lambda bs: _draft(bs, price), [b for b in branches if not b.done])


# -- verify -------------------------------------------------------------------------------------
def _verify(branches: list[Branch]) -> None:
    t = time.perf_counter()
    batch = RaggedBatch([b.p for b in branches])
    feeds, tails = {}, {}
    for r, b in enumerate(branches):  # the prompt the target has not seen yet, then the tree
        rest = b.unread_prompt()
        n = len(rest)
        parents = [parent + n if parent >= 0 else n - 1 for parent in b.tree.parents]
        feeds[r] = (rest + b.tree.tokens, chain(n) + parents)
        tails[r] = len(b.tree)
    logits = batch.forward(feeds, keep=tails)  # row -> [len(tree), V]
    elapsed = time.perf_counter() - t
    for r, b in enumerate(branches):
        n = len(feeds[r][0]) - tails[r]  # prompt tokens fed before the tree
        try:
            path, verdict = walk(b.tree, logits[r], b.sampler, b.position, b.spec.replacement)
            # the rest of the prompt, the pending token and the accepted nodes stay
            batch.commit(r, [*range(n), *(n + node for node in [0, *path])])
            b.accept(path, verdict, logits[r])
        except Exception as exc:  # this branch only
            b.fail(_error(exc))
        if n:  # the forward that read its prompt: prefill time
            b.stats.prefill_s += elapsed / len(branches)
        else:
            b.stats.verify_s += elapsed / len(branches)


def verify(branches: list[Branch], costs: CostModel | None = None) -> None:
    """ONE target forward over every branch's tree (the pending token alone where it drafted
    nothing), or, where some read their prompt first, the forwards that cost least; each
    branch accepts its path and commits."""
    branches = [b for b in branches if not b.done]
    for b in branches:
        b.tree = b.tree or TokenTree.root(b.seq.tokens[-1])
    # a batch pads every row to its widest, so a prompt beside running branches would multiply
    # their forward: with the measured costs the rows are split where that is cheaper, without
    # them a branch whose prompt the target has not seen is verified apart from the others.
    # The forwards are decided before any runs (a prompt read is no longer unread after it).
    if costs is None:
        new = [i for i, b in enumerate(branches) if b.unread_prompt()]
        groups = [new, [i for i in range(len(branches)) if i not in new]]
    else:
        widths = [len(b.unread_prompt()) + len(b.tree) for b in branches]
        groups = forwards(widths, [b.p.length for b in branches], costs.target)
    for group in groups:
        run_isolated(_verify, [branches[i] for i in group])
