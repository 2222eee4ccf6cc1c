"""What every engine returns for one request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DecodeStats:
    """Counters and timings of one request. Forward counts include the prefill."""

    method: str = ""
    new_tokens: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    rounds: int = 0  # verification rounds (speculative engines)
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens accepted
    wall_s: float = 0.0
    prefill_s: float = 0.0  # prompt forwards (the target's first verification reads its prompt)
    draft_s: float = 0.0
    verify_s: float = 0.0  # target forwards after the prompt's (AR: every decode step)
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    lookup_drafted: int = 0  # draft tokens only lookup proposed (in `drafted`)
    lookup_accepted: int = 0  # of those, accepted (in `accepted`; the model's: the rest)
    copied: bool = False  # its tokens are an identical greedy request's (SpecConfig.dedup)

    @property
    def prefix_hit_rate(self) -> float:
        """Share of the prompt served by the prefix cache (its last token is always fed)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def mean_draft_len(self) -> float:
        """Draft tokens per verification round (adaptive speculation varies it)."""
        return self.drafted / self.rounds if self.rounds else 0.0

    @property
    def alpha(self) -> float:
        """Acceptance rate: accepted / drafted."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {
            "alpha": self.alpha,
            "tokens_per_s": self.tokens_per_s,
            "prefix_hit_rate": self.prefix_hit_rate,
            "mean_draft_len": self.mean_draft_len,
        }


@dataclass(frozen=True)
class TokenLogprob:
    """One output token under the target p's raw distribution (log_softmax of its logits where
    the token was emitted, before temperature and top-p): the token's log-probability and the
    `SamplingParams.logprobs` most likely tokens there, most likely first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), descending


@dataclass
class GenerationResult:
    token_ids: list[int]  # generated ids (the prompt excluded)
    text: str
    finish_reason: str  # "stop" (eos or stop string), "length", "cancelled" or "error"
    stats: DecodeStats = field(default_factory=DecodeStats)
    prompt: str | None = None
    error: str | None = None  # set when this request failed (its branch only)
    logprobs: list[TokenLogprob] | None = None  # one per token id (SamplingParams.logprobs)

    def to_dict(self) -> dict:
        out = {
            "prompt": self.prompt,
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": self.finish_reason,
            "stats": self.stats.to_dict(),
        }
        if self.logprobs is not None:
            out["logprobs"] = [asdict(t) for t in self.logprobs]
        return out | ({"error": self.error} if self.error else {})
