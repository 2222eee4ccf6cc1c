"""Distribution tests with power (issue #11): every speculative method is lossless at T > 0.

Lossless means the emitted tokens follow the target p exactly: the token at every generated
position, given the prefix before it, is distributed as p(. | prefix) after temperature and top-p.
Each check below returns a p-value; a lossless check fails below ALPHA, and each check is shown to
have power by planting a bug in the accept rule's parts (`tree.residual`, `tree.without`, looked up
by `walk_sampling` at call time) and asserting the p-value falls below POWER.

1) The walk alone (`walk_sampling`) on hand-built trees whose p and q at a node depend only on the
   node's depth and token parity: the token emitted at depth d given the path is p at the path's
   node of depth d, for every depth, tested one (depth, parity) stratum at a time (chi-square).
2) Real engines on the tiny float64 pair: every generated position's token is turned into a
   randomized probability integral transform (PIT) u under the exact target p(. | prefix); under
   losslessness all u are iid Uniform(0, 1), tested pooled with Kolmogorov-Smirnov.
3) The n samples of one prompt are independent, and different seeds give different samples.
"""

from dataclasses import dataclass, replace

import pytest
import torch
from conftest import encode
from scipy.stats import binomtest, chisquare, kstest

import seedtree.decoding.tree as tree_mod
from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.adaptive import CostModel
from seedtree.decoding.sampling import probs_from_logits
from seedtree.decoding.tree import TokenTree, walk_sampling
from seedtree.engine import Request, costs, expand_requests, generate_many

# The engines run the batch policy (`SpecConfig.policy="batch"`) on a cost shape where rows are
# free (a GPU's): every batch size drafts, and each round's depth still follows the branches'
# acceptance, so the checks see speculation at its most varied. (With the real CPU shape a batch
# of 64 rows would decode plainly and test nothing speculative.)
ROWS_FREE = CostModel(a=0.3, b=0.0, e=0.0, d0=0.05, d1=0.0)


@pytest.fixture(autouse=True)
def rows_free(monkeypatch):
    monkeypatch.setattr(costs, "measure", lambda pair: ROWS_FREE)


ALPHA = 1e-4  # a lossless check fails when its p-value is below this
POWER = 1e-6  # a planted bug must push the p-value below this (far below ALPHA)


def resample_from_p(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Planted bug: after a rejection draw from p, not from norm(max(0, p - q))."""
    return p


def without_no_renormalisation(q: torch.Tensor, x: int) -> torch.Tensor:
    """Planted bug: remove the rejected candidate from q but do not renormalise."""
    q = q.clone()
    q[x] = 0.0
    return q


def without_no_removal(q: torch.Tensor, x: int) -> torch.Tensor:
    """Planted bug: keep q as it was, as if candidates were drawn with replacement."""
    return q


BUGS = {
    "residual-is-p": ("residual", resample_from_p),
    "without-no-renormalisation": ("without", without_no_renormalisation),
    "without-no-removal": ("without", without_no_removal),
}


def plant(monkeypatch, bug: str) -> None:
    name, fn = BUGS[bug]
    monkeypatch.setattr(tree_mod, name, fn)


def gof_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square goodness of fit of counts [V] to probs [V]. 0.0 when a token of probability 0
    was seen; cells expecting fewer than 5 are pooled into one."""
    if (counts[probs == 0] > 0).any():
        return 0.0
    expected = probs * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    return float(chisquare(obs[keep].numpy(), exp[keep].numpy()).pvalue)


# -- 1) the walk alone ------------------------------------------------------------------------

V = 6
WALKS = 3000  # trees walked per check
# The target emits token 5 never (cut by top-p); the draft never proposes token 2 and sometimes
# proposes token 5 (always rejected). alpha = sum(min(p, q)) = 0.57, and q is peaked (0.5).
P_BASE = torch.tensor([0.35, 0.25, 0.20, 0.12, 0.08, 0.0], dtype=torch.float64)
Q_BASE = torch.tensor([0.15, 0.50, 0.0, 0.20, 0.05, 0.10], dtype=torch.float64)


def at_node(base: torch.Tensor, depth: int, token: int) -> torch.Tensor:
    """[V] p or q at a node: a rotation of the base set by the node's depth and token parity, so
    a walk that reads the wrong node's distribution emits the wrong tokens."""
    return base.roll(depth + 3 * (token % 2))


def draw_tree(k_config: tuple[int, ...], replacement: bool, gen: torch.Generator) -> TokenTree:
    """A token tree rooted at token 0: k_config[d] candidates below every node of depth d, drawn
    from q at that node (without replacement: at most q's support)."""
    tree = TokenTree.root(0)
    frontier = [0]
    for k in k_config:
        below = []
        for node in frontier:
            q = at_node(Q_BASE, tree.depths[node], tree.tokens[node])
            tree.q[node] = q
            k_node = k if replacement else min(k, int((q > 0).sum()))
            for x in torch.multinomial(q, k_node, replacement=replacement, generator=gen).tolist():
                below.append(tree.add_child(node, x))
        frontier = below
    return tree


@dataclass(frozen=True)
class WalkCheck:
    """Chi-square p-value of the emitted token per (depth, parity of the node it is emitted at)."""

    pvalues: dict[tuple[int, int], float]
    counts: dict[tuple[int, int], int]

    def depth_min(self, depth: int) -> float:
        return min(pv for (d, _), pv in self.pvalues.items() if d == depth)

    @property
    def bonferroni(self) -> float:
        return min(1.0, min(self.pvalues.values()) * len(self.pvalues))

    def __str__(self) -> str:
        return " ".join(
            f"d{d}/{'odd' if c else 'even'}: n={self.counts[d, c]} p={pv:.1e}"
            for (d, c), pv in sorted(self.pvalues.items())
        )


def check_walk(
    k_config: tuple[int, ...], replacement: bool, walks: int, walk_replacement: bool | None = None
) -> WalkCheck:
    """Walk `walks` fresh trees; every position of each walk's output (accepted path + final
    token, up to len(k_config) + 1 tokens) is counted under the node it was emitted at.
    `walk_replacement`: what the walk is told (default: how the candidates were drawn)."""
    gen = torch.Generator().manual_seed(sum(k_config) + 10 * replacement)
    counts = torch.zeros(len(k_config) + 1, 2, V)  # [depth, parity, V]
    told = replacement if walk_replacement is None else walk_replacement
    for _ in range(walks):
        tree = draw_tree(k_config, replacement, gen)
        p = torch.stack(
            [at_node(P_BASE, d, t) for d, t in zip(tree.depths, tree.tokens, strict=True)]
        )
        path, verdict = walk_sampling(tree, p, told, gen)
        emitted = [tree.tokens[n] for n in path] + [verdict.token]
        for depth, (node, x) in enumerate(zip([0, *path], emitted, strict=True)):
            counts[depth, tree.tokens[node] % 2, x] += 1
    pvalues, sizes = {}, {}
    for depth in range(counts.shape[0]):
        for parity in range(2):
            n = int(counts[depth, parity].sum())
            if n:
                p = at_node(P_BASE, depth, parity)
                pvalues[depth, parity] = gof_pvalue(counts[depth, parity], p)
                sizes[depth, parity] = n
    return WalkCheck(pvalues, sizes)


WALK_CASES = [
    pytest.param((1, 1, 1, 1), True, id="chain-gamma4"),
    pytest.param((3, 2, 1), True, id="tree321-replacement"),
    pytest.param((3, 2, 1), False, id="tree321-no-replacement"),
]


@pytest.mark.parametrize("k_config, replacement", WALK_CASES)
def test_walk_emits_p_at_every_depth(k_config, replacement):
    check = check_walk(k_config, replacement, WALKS)
    print(check)
    assert set(check.pvalues) >= {(d, c) for d in range(1, len(k_config) + 1) for c in (0, 1)}
    assert min(check.counts.values()) >= 100, check  # every stratum is sampled enough
    assert check.bonferroni > ALPHA, f"walk not lossless: {check}"


@pytest.mark.parametrize("k_config, replacement", WALK_CASES)
def test_walk_check_catches_resampling_from_p(monkeypatch, k_config, replacement):
    plant(monkeypatch, "residual-is-p")
    check = check_walk(k_config, replacement, WALKS)
    print(check)
    # a rejection can happen at every depth but the last (a leaf emits its bonus token from p)
    for depth in range(len(k_config)):
        assert check.depth_min(depth) < POWER, f"depth {depth} missed the bug: {check}"


@pytest.mark.parametrize("bug", ["without-no-renormalisation", "without-no-removal"])
def test_walk_check_catches_unrenormalised_q_without_replacement(monkeypatch, bug):
    plant(monkeypatch, bug)
    check = check_walk((3, 2, 1), False, WALKS)
    print(check)
    assert check.bonferroni < POWER, f"{bug} not caught: {check}"


def test_walk_check_catches_replacement_mismatch():
    """Candidates drawn with replacement but walked as if drawn without: a repeated candidate is
    tested against a q that no longer holds it, and accepted."""
    check = check_walk((3, 2, 1), True, WALKS, walk_replacement=False)
    print(check)
    assert check.bonferroni < POWER, f"mismatch not caught: {check}"


# -- 2) real engines on the tiny pair: every generated position --------------------------------

TOP_P = 0.9
NEW_TOKENS = 12  # gamma 4 commits up to 5 tokens a round: several rounds, every tree level
PROMPTS = ("what is 7*6?", "the cat sat on", "q: 12+30=", "once upon a time")
RUNS = 20  # samples per prompt, each with its own seed
CHAIN = SpecConfig(gamma=4)
TREE = SpecConfig(k_config=(3, 2, 1), replacement=False)
TREE_REPLACEMENT = SpecConfig(k_config=(3, 2, 1), replacement=True)


@dataclass(frozen=True)
class EngineCase:
    method: str
    spec: SpecConfig
    temperature: float
    seed: int  # first request seed; request i gets seed + i
    sampling: str = "speculative"

    def __str__(self) -> str:
        shape = f"gamma{self.spec.gamma}"
        if self.method.startswith("mcsd"):
            shape = "tree" + "".join(map(str, self.spec.k_config))
            shape += "-repl" if self.spec.replacement else "-norepl"
        return f"{self.method}-{shape}-T{self.temperature}-{self.sampling}"


@dataclass(frozen=True)
class PitCheck:
    """Kolmogorov-Smirnov p-values of the pooled randomized PITs, one per token order."""

    pvalues: dict[str, float]  # order -> p-value
    positions: int
    outside: int  # emitted tokens of target probability 0 (outside the top-p nucleus)
    accepted: int
    drafted: int

    @property
    def pvalue(self) -> float:
        """Bonferroni over the orders; 0.0 if any token fell outside the nucleus."""
        if self.outside:
            return 0.0
        return min(1.0, len(self.pvalues) * min(self.pvalues.values()))

    def __str__(self) -> str:
        orders = " ".join(f"{o}: p={pv:.1e}" for o, pv in self.pvalues.items())
        return (
            f"p={self.pvalue:.1e} ({orders}) positions={self.positions} outside={self.outside} "
            f"accepted={self.accepted}/{self.drafted}"
        )


@torch.inference_mode()
def next_token_logits(model, prompt: list[int], tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """tokens [B, L] generated after `prompt` -> [B, L, V]: the model's logits for each generated
    token given its prefix (one forward over prompt + tokens)."""
    ids = torch.cat([torch.tensor(prompt).expand(len(tokens), -1), tokens], dim=1)
    return model(ids).logits[:, len(prompt) - 1 : -1, :vocab]


def randomized_pit(
    p: torch.Tensor, key: torch.Tensor, tokens: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """p, key [L, V]; tokens, u [L]: emitted tokens and uniforms. Tokens ranked by `key`
    (descending, ties by id); returns [L]: the p-mass ranked strictly above the emitted token +
    u * p(emitted token). Uniform(0, 1) when the token is drawn from p, whatever the ranking."""
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(p.shape[-1]).expand_as(order))
    x = tokens[:, None]
    above = (p * (rank < rank.gather(-1, x))).sum(-1)
    return above + u * p.gather(-1, x)[:, 0]


def check_engine(pair, case: EngineCase, decode_temperature: float | None = None) -> PitCheck:
    """Decode every prompt RUNS times (distinct seeds) and pool the randomized PITs of every
    generated position under two token orders: by p (the target's likeliest tokens first) and by
    q/p (the tokens the draft over-proposes first, where any leak of q into the output piles up;
    the p order alone misses the residual-is-p bug, p-values 0.04..0.7 on these cases).
    `decode_temperature`: decode at another temperature than the one checked (a planted bug)."""
    params = SamplingParams(
        temperature=case.temperature,
        top_p=TOP_P,
        max_new_tokens=NEW_TOKENS,
        ignore_eos=True,
        sampling=case.sampling,
    )
    decode = replace(params, temperature=decode_temperature or case.temperature)
    prompts = [encode(pair, text) for text in PROMPTS] * RUNS
    requests = [Request(ids, replace(decode, seed=case.seed + i)) for i, ids in enumerate(prompts)]
    run = generate_many(pair, requests, case.method, case.spec)
    gen = torch.Generator().manual_seed(case.seed)
    pits: dict[str, list[torch.Tensor]] = {"p": [], "q/p": []}
    outside = 0
    for result in run.results:
        assert result.error is None and len(result.token_ids) == NEW_TOKENS, result.error
    for start in range(len(PROMPTS)):  # requests start, start + len(PROMPTS), .. share a prompt
        prompt = requests[start].prompt_ids
        tokens = torch.tensor([r.token_ids for r in run.results[start :: len(PROMPTS)]])
        logits = next_token_logits(pair.target, prompt, tokens, pair.vocab_size).flatten(0, 1)
        p = probs_from_logits(logits, params)  # [positions, V]
        q = probs_from_logits(
            next_token_logits(pair.draft, prompt, tokens, pair.vocab_size).flatten(0, 1), params
        )
        tokens = tokens.flatten()
        # the engines score in float32: a token cut by the nucleus at one precision only sits on
        # its boundary, it is not outside
        nucleus = (p > 0) | (probs_from_logits(logits.float(), params) > 0)
        outside += int((~nucleus.gather(-1, tokens[:, None])).sum())
        u = torch.rand(len(tokens), generator=gen, dtype=torch.float64)
        pits["p"].append(randomized_pit(p, p, tokens, u))
        excess = torch.where(p > 0, q / p.clamp_min(1e-300), torch.zeros_like(p))
        pits["q/p"].append(randomized_pit(p, excess, tokens, u))
    pvalues = {o: float(kstest(torch.cat(v).numpy(), "uniform").pvalue) for o, v in pits.items()}
    return PitCheck(
        pvalues,
        positions=sum(len(r.token_ids) for r in run.results),
        outside=outside,
        accepted=sum(r.stats.accepted for r in run.results),
        drafted=sum(r.stats.drafted for r in run.results),
    )


SHAPES = [  # every method that verifies with the tree walk today, with each draft shape
    ("seed", CHAIN),
    ("seed-batched", CHAIN),
    ("mcsd", TREE),
    ("mcsd", TREE_REPLACEMENT),
    ("mcsd-seed", TREE),
    ("mcsd-seed", TREE_REPLACEMENT),
    ("mcsd-batched", TREE),
]
# seed and seed-batched (mcsd and mcsd-seed) give equal samples for equal seeds: distinct seeds
# per case make every case an independent sample
ENGINE_CASES = [
    EngineCase(method, spec, temperature, seed=1000 * (2 * shape + t))
    for shape, (method, spec) in enumerate(SHAPES)
    for t, temperature in enumerate((0.7, 1.3))
]


@pytest.mark.parametrize("case", ENGINE_CASES, ids=str)
def test_engine_emits_p_at_every_position(pair, case):
    check = check_engine(pair, case)
    print(case, check)
    assert 0 < check.accepted < check.drafted, check  # both accept and reject paths ran
    assert check.pvalue > ALPHA, f"{case} not lossless: {check}"


# each method and draft shape once, alternating temperatures. The without-replacement bugs (q not
# renormalised) move the tiny pair's output too little to be seen end to end at this budget (KS
# p-values 0.05..3e-5 at 2400 positions); the walk checks above catch them.
RESIDUAL_CASES = [ENGINE_CASES[2 * shape + shape % 2] for shape in range(len(SHAPES))]


@pytest.mark.parametrize("case", RESIDUAL_CASES, ids=str)
def test_engine_check_catches_resampling_from_p(pair, monkeypatch, case):
    plant(monkeypatch, "residual-is-p")
    check = check_engine(pair, case)
    print(case, check)
    assert check.pvalue < POWER, f"residual-is-p not caught on {case}: {check}"


def test_engine_check_catches_wrong_temperature(pair):
    """Decoding at T=1.0 what should be T=0.7: a warping bug that q plays no part in, caught by
    the p order (and by tokens outside the nucleus)."""
    case = EngineCase("seed-batched", CHAIN, 0.7, seed=50_000)
    check = check_engine(pair, case, decode_temperature=1.0)
    print(case, check)
    assert check.outside > 0, check  # T=1.0 spreads past T=0.7's nucleus
    assert check.pvalues["p"] < POWER, f"wrong temperature not caught on {case}: {check}"


# -- 3) the n samples of one prompt -----------------------------------------------------------

INDEPENDENCE_SEEDS = 60


def same_seed_expand(prompts: list[list[int]], params: SamplingParams) -> list[Request]:
    """Planted bug: every sample of a prompt gets the prompt's seed."""
    return [Request(ids, replace(params, n=1)) for ids in prompts for _ in range(params.n)]


def additive_seed_expand(prompts: list[list[int]], params: SamplingParams) -> list[Request]:
    """The old rule, a planted bug: sample j of seed s seeded s + j (seeds 1 and 2 overlap)."""
    return [
        Request(ids, replace(params, n=1, seed=params.seed + j))
        for ids in prompts
        for j in range(params.n)
    ]


@dataclass(frozen=True)
class PairCheck:
    """Samples 0 and 1 of one prompt, over many seeds: how often their first tokens agree, against
    sum(p^2), the rate for independent draws from p; and how many are identical throughout."""

    matches: int
    pairs: int
    rate: float  # sum_v p(v)^2
    identical: int
    pvalue: float  # one-sided binomial: more matches than independence predicts

    def __str__(self) -> str:
        return (
            f"p={self.pvalue:.1e}: first tokens equal in {self.matches}/{self.pairs} pairs "
            f"(independent: {self.rate * self.pairs:.1f}), identical samples {self.identical}"
        )


def check_sample_pairs(pair, expand) -> PairCheck:
    ids = encode(pair, PROMPTS[0])
    params = SamplingParams(temperature=0.7, top_p=TOP_P, max_new_tokens=6, ignore_eos=True, n=2)
    requests = [
        r for s in range(INDEPENDENCE_SEEDS) for r in expand([ids], replace(params, seed=10 * s))
    ]
    # seed-batched: the samples of a prompt share its prefill (one KV copied into n rows)
    run = generate_many(pair, requests, "seed-batched", CHAIN)
    samples = [r.token_ids for r in run.results]
    firsts, seconds = samples[0::2], samples[1::2]
    matches = sum(a[0] == b[0] for a, b in zip(firsts, seconds, strict=True))
    identical = sum(a == b for a, b in zip(firsts, seconds, strict=True))
    logits = next_token_logits(pair.target, ids, torch.tensor([firsts[0][:1]]), pair.vocab_size)
    p = probs_from_logits(logits[0, 0], params)  # [V] the first token's distribution
    rate = float((p**2).sum())
    pvalue = binomtest(matches, len(firsts), rate, alternative="greater").pvalue
    return PairCheck(matches, len(firsts), rate, identical, float(pvalue))


def test_n_samples_of_one_prompt_are_independent(pair):
    check = check_sample_pairs(pair, expand_requests)
    print(check)
    assert check.identical == 0, check
    assert check.pvalue > ALPHA, f"samples of one prompt are not independent: {check}"


def test_sample_pair_check_catches_shared_seed(pair):
    check = check_sample_pairs(pair, same_seed_expand)
    print(check)
    assert check.pvalue < POWER and check.identical == check.pairs, check


def shared_samples(pair, expand) -> int:
    """Samples that requests with seeds 1 and 2 (n=4 each, one prompt) have in common."""
    ids = encode(pair, PROMPTS[1])
    params = SamplingParams(temperature=1.3, top_p=TOP_P, max_new_tokens=12, ignore_eos=True, n=4)
    one = expand([ids], replace(params, seed=1))
    two = expand([ids], replace(params, seed=2))
    run = generate_many(pair, one + two, "seed-batched", CHAIN)
    samples = [tuple(r.token_ids) for r in run.results]
    return len(set(samples[:4]) & set(samples[4:]))


def test_different_seeds_give_different_samples(pair):
    shared = shared_samples(pair, expand_requests)
    assert shared == 0, f"seeds 1 and 2 share {shared} of 4 samples"


def test_shared_sample_check_catches_additive_seeds(pair):
    """The check above can fail: with seed + j, seeds 1 and 2 share 3 of their 4 samples."""
    assert shared_samples(pair, additive_seed_expand) == 3
