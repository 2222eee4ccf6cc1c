"""Frozen configuration for one request: how to sample, and how to speculate."""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.errors import SeedtreeError
from seedtree.validate import (
    MAX_FANOUT,
    MAX_GAMMA,
    MAX_LOGPROBS,
    MAX_TREE_NODES,
    check_bool,
    check_int,
    check_real,
    check_seed,
    int_tuple,
    str_tuple,
)

SAMPLING_MODES = ("coupled", "speculative")


@dataclass(frozen=True)
class SamplingParams:
    """Like vLLM's `SamplingParams`. temperature 0 means greedy (argmax) decoding.

    `stop`: strings that end generation; the output text ends just before the first one.
    `seed`: seeds this request's sampler, so T > 0 results are reproducible.
    `n`: samples per prompt (used by many-request generation; sample j gets a seed hashed from
    (seed, j)).
    `sampling` (T > 0): `coupled` (seeded Gumbel-max: every method emits the tokens AR emits
    with the same seed) or `speculative` (speculative sampling: the target's distribution, but
    the tokens depend on the method). See `seedtree.decoding.sampling`.
    `logprobs`: None (off, the default: no log-softmax is computed) or k in [0, 20]: each output
    token's log-probability and its k most likely alternatives (`GenerationResult.logprobs`),
    under the target's *raw* distribution: log_softmax of the target's logits at that position,
    before temperature and top-p (vLLM's default "raw logprobs").
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None
    n: int = 1
    sampling: str = "coupled"
    logprobs: int | None = None

    def __post_init__(self) -> None:
        check_real("temperature", self.temperature)
        check_real("top_p", self.top_p)
        if self.temperature < 0:
            raise SeedtreeError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SeedtreeError(f"top_p must be in (0, 1], got {self.top_p}")
        check_int("max_new_tokens", self.max_new_tokens, low=1)
        check_int("n", self.n, 1, MAX_FANOUT)
        check_seed("seed", self.seed)
        check_bool("ignore_eos", self.ignore_eos)
        object.__setattr__(self, "stop", str_tuple("stop", self.stop))
        if any(not s for s in self.stop):
            raise SeedtreeError("stop strings must be non-empty")
        if self.sampling not in SAMPLING_MODES:
            raise SeedtreeError(
                f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}"
            )
        if self.logprobs is not None:
            check_int("logprobs", self.logprobs, 0, MAX_LOGPROBS)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


POLICIES = ("batch", "fixed")  # SpecConfig.policy


@dataclass(frozen=True)
class SpecConfig:
    """Speculative decoding: the draft q proposes `gamma` tokens per round for the target p.

    MCSD drafts a token tree instead: `k_config[d]` candidates below every node of depth d, so
    gamma = len(k_config). `replacement`: whether MCSD draws a node's candidates with replacement
    (T > 0; at T=0 the candidates are q's top-k).

    Adaptive speculation (`adaptive`): each round a branch drafts the length in 0..gamma that
    maximises expected tokens per unit of time (gamma 0 = plain decoding), from its own running
    estimate of alpha and, with `policy="batch"` (the step engine's default), the costs the
    engine measured at start-up for the whole batch it runs (`adaptive.plan_depths`: speculation
    fades to plain batched decoding as the batch fills), or with `policy="fixed"` (SEED's
    drafter threads always) the fixed draft/target cost ratio `c`, branch by branch; a chain
    also stops early where the draft's probability of its token falls below `min_draft_prob`;
    at T=0 a token tree gives a node fewer candidates than `k_config` allows once those it has
    hold `tree_mass` of q's probability there (1: always k_config's count). Any draft policy is
    lossless: verification alone decides what is emitted.

    Lookup drafting (`lookup` > 0; `seedtree.decoding.lookup`): each round a branch also proposes
    up to `lookup` tokens that followed its last few tokens elsewhere (its prompt, its siblings'
    outputs, earlier calls of the tree), merged into its token tree for free (no draft forward);
    with a good lookup record the branch drafts less with the model. At T=0 and with coupled
    sampling; speculative sampling needs each candidate's proposal distribution, so it drafts
    with the model alone.
    """

    gamma: int = 4
    k_config: tuple[int, ...] = (2, 1, 1)
    replacement: bool = False
    adaptive: bool = True
    c: float = 0.15  # draft step cost / target step cost (int8 0.5B vs bf16 1.5B on CPU: 0.14-0.18)
    min_draft_prob: float = 0.0
    tree_mass: float = 1.0  # T=0 token trees: a node's candidates stop once they hold this of q
    lookup: int = 0  # lookup drafting: candidates copied from text already written, at most
    dedup: bool = True  # identical greedy requests decoded once (batched step engine)
    policy: str = "batch"  # adaptive draft lengths: "batch" (measured costs) | "fixed" (c)

    def __post_init__(self) -> None:
        check_int("gamma", self.gamma)
        object.__setattr__(self, "k_config", int_tuple("k_config", self.k_config))
        check_bool("replacement", self.replacement)
        if self.tree_nodes > MAX_TREE_NODES:
            raise SeedtreeError(
                f"k_config {','.join(map(str, self.k_config))} makes {self.tree_nodes} draft-tree "
                f"nodes per round, more than {MAX_TREE_NODES}: use fewer candidates per depth"
            )
        check_bool("adaptive", self.adaptive)
        if not 1 <= self.gamma <= MAX_GAMMA:
            raise SeedtreeError(
                f"gamma must be in [1, {MAX_GAMMA}] (draft tokens per round), got {self.gamma}"
            )
        if not self.k_config:
            raise SeedtreeError("k_config is empty: give candidates per draft depth, e.g. 2,1,1")
        if any(k < 1 for k in self.k_config):
            raise SeedtreeError(
                f"k_config entries must be >= 1, got {','.join(map(str, self.k_config))}"
            )
        if not isinstance(self.c, int | float) or not 0 < self.c < 10:
            raise SeedtreeError(f"c (draft/target cost ratio) must be in (0, 10), got {self.c}")
        check_int("lookup", self.lookup, 0, MAX_GAMMA)
        check_bool("dedup", self.dedup)
        if self.policy not in POLICIES:
            raise SeedtreeError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not isinstance(self.min_draft_prob, int | float) or not 0 <= self.min_draft_prob < 1:
            raise SeedtreeError(f"min_draft_prob must be in [0, 1), got {self.min_draft_prob}")
        check_real("tree_mass", self.tree_mass)
        if not 0 < self.tree_mass <= 1:
            raise SeedtreeError(f"tree_mass must be in (0, 1], got {self.tree_mass}")

    @property
    def tree_nodes(self) -> int:
        """Draft tokens in one full MCSD token tree."""
        total, width = 0, 1
        for k in self.k_config:
            width *= k
            total += width
        return total
