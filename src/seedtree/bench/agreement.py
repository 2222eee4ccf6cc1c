"""Same tree as `ar`? Every difference explained: where the trees part, and whether the target's
scores there are tied (a rounding tie) or not (a DEFECT).

A lossless method builds `ar`'s tree at T=0, and at T > 0 with coupled sampling (the same seed
gives the same tokens; the diagnosis then compares the perturbed scores log p + g). Trees are
compared by `Tree.signature()`; where they differ, the engine calls of both trees (each `Call`
holds every request's prompt and output ids) are walked in order to the first call whose outputs
differ. Every earlier output was the same, so that call's prompts are too; each request of it
whose output differs is diagnosed by `seedtree.decoding.check.diagnose`, scored the way the other
method scores (`seedtree.engine.methods.scoring_of`). Later calls are not compared: their prompts
already differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from seedtree.decoding.check import Diagnosis, Scoring, Top2, diagnose
from seedtree.decoding.params import SamplingParams
from seedtree.decoding.sampling import Sampler
from seedtree.models.loader import ModelPair
from seedtree.search import Tree


def _token(tokenizer, t: int) -> str:
    return "(end)" if t < 0 else f"{t} {tokenizer.decode([t])!r}"


def _top2(tokenizer, top: Top2 | None) -> str:
    if top is None:
        return "-"
    pairs = zip(top.tokens, top.logits, strict=True)
    return ", ".join(f"{tokenizer.decode([t])!r} {v:.6g}" for t, v in pairs)


def worst_verdict(verdicts) -> str:
    """`yes` for no divergence, else `DEFECT` if any divergence is one, else `tie`."""
    verdicts = set(verdicts)
    return "yes" if not verdicts else "DEFECT" if "DEFECT" in verdicts else "tie"


def same_as_ar(identical: bool, rows: list[dict]) -> str:
    """A table cell for outputs compared with AR: `yes` (identical in every pass), else the worst
    verdict among `rows` (diagnosed divergences, as dicts with a "verdict"), else `NO`."""
    verdicts = [row["verdict"] for row in rows if "verdict" in row]
    return "yes" if identical else worst_verdict(verdicts) if verdicts else "NO"


@dataclass(frozen=True)
class TreeDivergence:
    """Where one method's tree first parts from `ar`'s: call, request and token (`diagnosis`).
    Without a diagnosis (`request` -1) the trees differ although their calls do not part (or the
    calls' prompts differ first): that is a defect of the search, not of decoding."""

    example_id: str
    call: int  # index into tree.calls
    phase: str
    level: int
    request: int
    diagnosis: Diagnosis | None
    note: str = ""
    passes: tuple[int, ...] = ()  # the bench passes in which it happened

    @property
    def verdict(self) -> str:
        return self.diagnosis.verdict if self.diagnosis else "DEFECT"

    def label(self) -> str:
        return self.diagnosis.label() if self.diagnosis else f"DEFECT ({self.note})"

    def describe(self, tokenizer, method: str) -> str:
        """One line for a person: where, which tokens, both top-2s, gap, noise, verdict."""
        where = f"{self.example_id}, call {self.call} ({self.phase}, level {self.level})"
        d = self.diagnosis
        if d is None:
            return f"{where}: {self.label()}"
        ar, other = _token(tokenizer, d.ar_token), _token(tokenizer, d.other_token)
        text = f"{where}, request {self.request}, token {d.position}: ar {ar}, {method} {other}"
        if d.gap is not None:
            text += (
                f"; target top-2 one token at a time: {_top2(tokenizer, d.ar_top2)}; "
                f"{d.scoring}: {_top2(tokenizer, d.other_top2)}"
            )
        return f"{text} -> {d.label()}" + (f" ({d.note})" if d.note else "")

    def to_dict(self) -> dict:
        return {
            "example_id": self.example_id,
            "call": self.call,
            "phase": self.phase,
            "level": self.level,
            "request": self.request,
            "verdict": self.verdict,
            "label": self.label(),
            "note": self.note,
            "passes": list(self.passes),
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
        }


@dataclass(frozen=True)
class Agreement:
    """One method's trees against `ar`'s: `yes` (all the same), `tie` or `DEFECT`."""

    method: str
    compared: int  # tree pairs compared
    divergences: tuple[TreeDivergence, ...] = field(default=())

    @property
    def verdict(self) -> str:
        return worst_verdict(d.verdict for d in self.divergences)

    def worst(self) -> TreeDivergence | None:
        """A DEFECT if any, else the tie closest to one (largest gap / noise)."""

        def closeness(d: TreeDivergence) -> tuple[bool, float]:
            g = d.diagnosis
            ratio = 0.0 if g is None or g.gap is None else g.gap / max(g.noise, 1e-12)
            return (d.verdict == "DEFECT", ratio)

        return max(self.divergences, key=closeness, default=None)

    def label(self) -> str:
        """The bench table's cell: `yes`, `tie (gap 0.0625 <= noise 0.19)` or `DEFECT (...)`."""
        worst = self.worst()
        if worst is None:
            return "yes"
        more = len(self.divergences) - 1
        return worst.label() + (f" +{more} more" if more else "")

    def to_dict(self, tokenizer=None) -> dict:
        """JSON; with a tokenizer each divergence also carries its `describe` line as "text"."""
        divergences = [
            d.to_dict() | ({"text": d.describe(tokenizer, self.method)} if tokenizer else {})
            for d in self.divergences
        ]
        return {
            "method": self.method,
            "verdict": self.verdict,
            "label": self.label(),
            "compared": self.compared,
            "divergences": divergences,
        }


def _sampler(tree: Tree, seed: int | None) -> Sampler | None:
    """The sampler a request of `tree` was decoded with, where coupled sampling chose its
    tokens (T > 0): its scores are what the target took the argmax of."""
    engine = tree.config.get("engine", {})
    temperature = engine.get("temperature", 0.0)
    if not temperature or seed is None:
        return None
    params = SamplingParams(
        temperature=temperature,
        top_p=engine.get("top_p", 1.0),
        seed=seed,
        sampling=engine.get("sampling", "coupled"),
    )
    return Sampler(params)


def compare_trees(
    pair: ModelPair, ar: Tree, other: Tree, scoring: Scoring, memo: dict | None = None
) -> list[TreeDivergence]:
    """[] if the trees are the same; else where `other` first parts from `ar`, diagnosed.
    `memo` caches diagnoses across calls (the same divergence in several passes)."""
    if ar.signature() == other.signature():
        return []
    memo = {} if memo is None else memo
    for c, (a, o) in enumerate(zip(ar.calls, other.calls, strict=False)):
        if (a.prompt_ids, a.output_ids) == (o.prompt_ids, o.output_ids):
            continue
        where = {"example_id": ar.example_id, "call": c, "phase": a.phase, "level": a.level}
        if a.prompt_ids != o.prompt_ids:
            note = "the call's prompts differ although no earlier output did"
            return [TreeDivergence(**where, request=-1, diagnosis=None, note=note)]
        batch = list(zip(a.prompt_ids, a.output_ids, strict=True))
        out = []
        for r, (prompt, ar_ids, other_ids) in enumerate(
            zip(a.prompt_ids, a.output_ids, o.output_ids, strict=True)
        ):
            if ar_ids == other_ids:
                continue
            seed = a.seeds[r] if a.seeds else None
            key = (tuple(prompt), tuple(ar_ids), tuple(other_ids), scoring, seed)
            if key not in memo:
                sampler = _sampler(ar, seed)
                memo[key] = diagnose(
                    pair, prompt, ar_ids, other_ids, scoring, batch, r, sampler=sampler
                )
            out.append(TreeDivergence(**where, request=r, diagnosis=memo[key]))
        return out
    note = "every engine call has the same tokens, yet the trees differ"
    if len(ar.calls) != len(other.calls):
        note = f"the trees make {len(ar.calls)} and {len(other.calls)} engine calls"
    return [TreeDivergence(ar.example_id, -1, "", 0, -1, None, note)]


def agreement(
    pair: ModelPair,
    method: str,
    runs: list[tuple[list[Tree], list[Tree]]],  # per pass: (ar's trees, the method's trees)
    scoring: Scoring,
    on_tree: Callable[[], None] | None = None,
) -> Agreement:
    """Compare a method's trees with `ar`'s over passes; a divergence seen in several passes is
    diagnosed once and listed once, with the passes it happened in. `on_tree`: called after
    each pair of trees (progress: a differing tree's diagnosis takes seconds to minutes)."""
    memo: dict = {}
    seen: dict[tuple, TreeDivergence] = {}
    compared = 0
    for i, (ar_trees, other_trees) in enumerate(runs):
        for ar, other in zip(ar_trees, other_trees, strict=True):
            compared += 1
            for d in compare_trees(pair, ar, other, scoring, memo):
                g = d.diagnosis
                key = (d.example_id, d.call, d.request, d.note) + (
                    (g.position, g.ar_token, g.other_token) if g else ()
                )
                old = seen.get(key, d)
                seen[key] = TreeDivergence(**{**old.__dict__, "passes": (*old.passes, i)})
            if on_tree is not None:
                on_tree()
    return Agreement(method, compared, tuple(seen.values()))
