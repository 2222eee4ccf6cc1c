"""Built-in losslessness checks: where does a method's greedy output leave AR's, and is that a tie
of the target's scores or a defect?

At T=0 a lossless method emits the target's argmax at every position. How the target *scores* a
position depends on the method: AR feeds one token per forward; a speculative method scores a
verification block of several tokens at once (a chain of gamma + 1, or an MCSD token tree); a
batched method scores the rows of several requests in one padded forward. In exact arithmetic
these agree; in floating point they differ by the *scoring noise* (~2e-5 logits in float32, ~0.2
in bfloat16). Vocabulary used below:

  gap      target logit of its first choice minus that of the other method's token, at the first
           differing position, given AR's prefix and scored AR's way (0 for an exact tie)
  noise    the largest |logit| difference between AR's way and the other method's way of scoring
           AR's own tokens, over a window of positions around the divergence
  tie      gap <= max(noise, TIE_FLOOR), or the target scored the other method's way ranks the
           other method's token first: the two methods are both right up to rounding
  DEFECT   anything else: the other method emitted a token the target does not rank first

`diagnose` replays AR's tokens teacher-forced, once AR's way (`_ar_way`) and once in the other
method's shape (`_replay`, at every alignment of its blocks), with only the target model, a
`KVSequence` and transformers' `DynamicCache`: it shares no code with the engines it judges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import DynamicCache

from seedtree.decoding.kv import KVSequence
from seedtree.decoding.sampling import Sampler
from seedtree.models.loader import ModelPair

TIE_FLOOR = 1e-4  # below this gap two scorings agree even in float32 (its noise is ~2e-5)


@dataclass(frozen=True)
class Scoring:
    """How a method's target scores a token: `block` tokens per row per forward (1: one token,
    as AR; gamma + 1: a verification block whose first token is the last committed one), as a
    token tree with `tree` candidates per draft depth (MCSD), the rows of a call's requests in
    one padded forward when `batched`."""

    block: int = 1
    batched: bool = False
    tree: tuple[int, ...] = ()

    def describe(self) -> str:
        shape = "one token" if self.block == 1 else f"blocks of {self.block}"
        if self.tree:
            shape = f"token trees {','.join(map(str, self.tree))}"
        return f"batched rows, {shape}" if self.batched else shape


@dataclass(frozen=True)
class Top2:
    tokens: tuple[int, int]
    logits: tuple[float, float]

    @classmethod
    def of(cls, logits: torch.Tensor) -> Top2:  # logits [V]
        """The two best tokens; of equal logits the lower id first (argmax keeps that one)."""
        values, tokens = logits.topk(2)
        if values[0] == values[1] and tokens[0] > tokens[1]:
            tokens = tokens.flip(0)
        return cls(tuple(tokens.tolist()), tuple(values.tolist()))


@dataclass(frozen=True)
class Diagnosis:
    """The first position where a method's output leaves AR's, and the verdict there."""

    position: int  # index into the generated tokens
    ar_token: int  # -1: AR's output ended here
    other_token: int  # -1: the other output ended here
    verdict: str  # "tie" | "DEFECT"
    gap: float | None = None  # None where an output ended (no scores to compare)
    noise: float | None = None
    ar_top2: Top2 | None = None  # scored AR's way (one token per forward)
    other_top2: Top2 | None = None  # scored the other way, at the alignment most favouring it
    reproduced: bool = False  # scored the other way, the target ranks the other token first
    scoring: str = ""  # Scoring.describe() of the other way
    note: str = ""

    def label(self) -> str:
        """`tie (gap 0.0625 <= noise 0.19)`, `DEFECT (gap 3.1 > noise 0.19)`, ..."""
        if self.gap is None:
            return f"{self.verdict} ({self.note})"
        sign = "<=" if self.gap <= max(self.noise, TIE_FLOOR) else ">"
        text = f"{self.verdict} (gap {self.gap:.3g} {sign} noise {self.noise:.3g}"
        if sign == ">" and self.reproduced:
            text += f"; the target in {self.scoring} ranks its token first"
        return text + ")"

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label()}


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token; where one list is a prefix of the other, its end."""
    if a == b:
        return None
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    return min(len(a), len(b)) if i is None else i


@torch.inference_mode()
def _ar_way(pair: ModelPair, prompt: list[int], ids: list[int], positions: range) -> torch.Tensor:
    """AR's own scores, as `generate_ar` computes them (the prompt in one forward, then one token
    per forward): logits [len(positions), V] predicting ids[j] for j in `positions`."""
    kv = KVSequence(pair.target, pair.vocab_size)
    logits, out = kv.forward(prompt)[-1], []
    for j in range(positions.stop):
        if j in positions:
            out.append(logits)
        if j + 1 < positions.stop:
            logits = kv.forward([ids[j]])[-1]
    return torch.stack(out)


def _coupled_scores(sampler: Sampler | None, positions: range):
    """logits [W, V] at output `positions` -> what the target takes the argmax of: the logits
    themselves at T=0, the coupled scores log p + g with a coupled sampler."""
    if sampler is None or not sampler.coupled:
        return lambda logits: logits
    return lambda logits: torch.stack(
        [sampler.scores(row.cpu(), p) for row, p in zip(logits, positions, strict=True)]
    )


@dataclass(frozen=True)
class _Tile:
    """One row's verification input: the chain (root + AR's next tokens) first, then the siblings
    a token tree would also hold (copies of the chain token at their depth)."""

    ids: list[int]
    depths: list[int]
    mask: torch.Tensor  # [N, N] bool: node i sees node j (its ancestors and itself)
    chain: int  # the first `chain` nodes are the chain; their KV entries are kept


def _tile(chain: list[int], tree: tuple[int, ...]) -> _Tile:
    widths = tree[: len(chain) - 1] if tree else (1,) * (len(chain) - 1)
    parents, depths, level = [-1], [0], [0]
    for depth, k in enumerate(widths, start=1):
        nxt = []
        for node in level:
            for _ in range(k):
                parents.append(node)
                depths.append(depth)
                nxt.append(len(parents) - 1)
        level = nxt
    # level order puts the chain (the first node of each level) ahead of its siblings; put the
    # whole chain first so that its KV entries are the leading ones
    firsts = [depths.index(d) for d in range(len(chain))]
    order = firsts + [n for n in range(len(parents)) if n not in firsts]
    where = {node: i for i, node in enumerate(order)}
    mask = torch.zeros(len(order), len(order), dtype=torch.bool)
    for i, node in enumerate(order):
        while node >= 0:
            mask[i, where[node]] = True
            node = parents[node]
    return _Tile([chain[depths[n]] for n in order], [depths[n] for n in order], mask, len(chain))


def _batch_forward(model, vocab: int, kvs: list, lengths: list[int], tiles: list[_Tile]):
    """ONE target forward over every row's tile. `kvs[b]`: per layer (keys, values) [1, H, n, D]
    or None; keys are copied left-aligned into a [B, H, L_max, D] cache with the padding masked
    out; tiles are right-padded (a padded query sees only itself). Returns logits [B, Q_max, V]
    and the cache (row b's new entries at [b, :, L_max : L_max + len(tile)])."""
    dev = model.device
    n, l_max, q_max = len(tiles), max(lengths), max(len(t.ids) for t in tiles)
    ids = torch.zeros(n, q_max, dtype=torch.long)
    positions = torch.zeros(n, q_max, dtype=torch.long)
    mask = torch.zeros(n, 1, q_max, l_max + q_max, dtype=torch.bool)
    for b, (tile, length) in enumerate(zip(tiles, lengths, strict=True)):
        size = len(tile.ids)
        ids[b, :size] = torch.tensor(tile.ids)
        positions[b, :size] = torch.tensor([length + d for d in tile.depths])
        positions[b, size:] = length
        mask[b, 0, :, :length] = True
        mask[b, 0, :size, l_max : l_max + size] = tile.mask
        pad = torch.arange(size, q_max)
        mask[b, 0, pad, l_max + pad] = True
    if model.config._attn_implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=model.dtype).masked_fill(
            ~mask, torch.finfo(model.dtype).min
        )
    cache = DynamicCache(config=model.config)
    if l_max:
        for layer in range(model.config.num_hidden_layers):
            shape = next(kv[layer][0].shape for kv in kvs if kv is not None)
            keys = torch.zeros(n, shape[1], l_max, shape[3], dtype=model.dtype, device=dev)
            values = torch.zeros_like(keys)
            for b, kv in enumerate(kvs):
                if kv is not None:
                    keys[b, :, : lengths[b]] = kv[layer][0][0]
                    values[b, :, : lengths[b]] = kv[layer][1][0]
            cache.update(keys, values, layer)
    out = model(
        input_ids=ids.to(dev),
        position_ids=positions.to(dev),
        attention_mask=mask.to(dev),
        cache=cache,
        use_cache=True,
        logits_to_keep=q_max,
    )
    return out.logits[:, :, :vocab].float(), cache


@torch.inference_mode()
def _replay(
    pair: ModelPair,
    rows: list[list[int]],  # per request: prompt + AR's output
    prompt_lens: list[int],
    focus: int,
    scoring: Scoring,
    first: int,
    positions: range,
    prefilled: dict | None = None,
) -> torch.Tensor:
    """Logits [len(positions), V] predicting the generated tokens of row `focus` at `positions`,
    AR's tokens fed teacher-forced in `scoring`'s shape: every row scores a tile of
    `scoring.block` tokens per forward (the first tile `first` long: the blocks' alignment), all
    unfinished rows in one forward when `scoring.batched`, else the focus row alone.
    `prefilled` keeps the prompts' KV between calls (never modified in place)."""
    model, vocab = pair.target, pair.vocab_size
    # 1) prefill each distinct prompt once and share its KV (rows with one prompt: one state);
    #    a speculative method keeps the prompt's last token as its first tile's root
    cut = 0 if scoring.block == 1 else 1
    prefilled = {} if prefilled is None else prefilled
    kvs, fed, got = [], [], {}
    for row, plen in zip(rows, prompt_lens, strict=True):
        prompt = tuple(row[: plen - cut])
        if prompt and prompt not in prefilled:
            cache = DynamicCache(config=model.config)
            out = model(
                input_ids=torch.tensor([prompt], device=model.device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            layers = [(layer.keys, layer.values) for layer in cache.layers]
            prefilled[prompt] = (layers, out.logits[0, -1, :vocab].float())
        kvs.append(prefilled[prompt][0] if prompt else None)
        fed.append(len(prompt))
    if cut == 0 and 0 in positions:
        got[0] = prefilled[tuple(rows[focus][: prompt_lens[focus]])][1]
    # 2) rounds: each row's tile holds its next AR tokens; node j predicts row[fed + j + 1]
    size = first
    while len(got) < len(positions):
        todo = range(len(rows)) if scoring.batched else [focus]
        active = [r for r in todo if fed[r] < len(rows[r]) - 1]
        assert focus in active, "the focus row ended before the window"
        tiles = [
            _tile(rows[r][fed[r] : fed[r] + min(size, len(rows[r]) - 1 - fed[r])], scoring.tree)
            for r in active
        ]
        lengths = [fed[r] for r in active]
        logits, cache = _batch_forward(model, vocab, [kvs[r] for r in active], lengths, tiles)
        l_max = max(lengths)
        for b, (r, tile) in enumerate(zip(active, tiles, strict=True)):
            if r == focus:
                for j in range(tile.chain):
                    position = fed[r] + j + 1 - prompt_lens[r]
                    if position in positions:
                        got[position] = logits[b, j]
            # the row keeps its chain's new KV entries (its siblings' are dropped)
            new = [
                (
                    layer.keys[b : b + 1, :, l_max : l_max + tile.chain],
                    layer.values[b : b + 1, :, l_max : l_max + tile.chain],
                )
                for layer in cache.layers
            ]
            if kvs[r] is not None:
                new = [
                    (torch.cat([k, nk], dim=-2), torch.cat([v, nv], dim=-2))
                    for (k, v), (nk, nv) in zip(kvs[r], new, strict=True)
                ]
            kvs[r] = new
            fed[r] += tile.chain
        size = scoring.block
    return torch.stack([got[p] for p in positions])


@torch.inference_mode()
def diagnose(
    pair: ModelPair,
    prompt_ids: list[int],
    ar_ids: list[int],
    other_ids: list[int],
    scoring: Scoring = Scoring(),
    batch: list[tuple[list[int], list[int]]] | None = None,
    row: int = 0,
    window: int = 8,
    sampler: Sampler | None = None,
) -> Diagnosis | None:
    """None if `other_ids` equals `ar_ids`; else the first divergence and its verdict.

    `scoring`: how the other method scored tokens. `batch`: for a batched method, every request
    of the call as (prompt, AR's output), `row` being this one. The noise is measured on the
    `window` positions either side of the divergence, at every alignment of the blocks.
    `sampler`: the request's, for coupled sampling at T > 0: the target chose the argmax of
    the perturbed scores log p + g (`Sampler.scores`), so gaps, noise and top-2 are of those."""
    i = first_difference(ar_ids, other_ids)
    if i is None:
        return None
    a = ar_ids[i] if i < len(ar_ids) else -1
    b = other_ids[i] if i < len(other_ids) else -1
    if a < 0 or b < 0:
        who = "ar" if a < 0 else "the other method"
        return Diagnosis(i, a, b, "DEFECT", note=f"same tokens, but {who} stops here")
    positions = range(max(0, i - window), min(len(ar_ids), i + window + 1))
    at = i - positions.start
    to_scores = _coupled_scores(sampler, positions)
    ar_way = to_scores(_ar_way(pair, prompt_ids, ar_ids, positions))  # [W, V]
    batch = batch if scoring.batched and batch else [(prompt_ids, ar_ids)]
    row = row if len(batch) > 1 else 0
    assert list(batch[row][0]) == list(prompt_ids), "batch[row] is not this request"
    rows = [list(p) + list(o) for p, o in batch]
    rows[row] = list(prompt_ids) + ar_ids[: positions.stop]  # replay no further than needed
    lens = [len(p) for p, _ in batch]
    noise, reproduced, best, prefilled = 0.0, False, None, {}
    for first in range(1, scoring.block + 1):  # every alignment of the blocks
        other_way = to_scores(_replay(pair, rows, lens, row, scoring, first, positions, prefilled))
        both = ar_way.isfinite() & other_way.isfinite()  # [W, V] (coupled: -inf off top-p)
        noise = max(noise, float((other_way - ar_way).where(both, 0.0).abs().max()))
        here = other_way[at]
        reproduced = reproduced or int(here.argmax()) == b
        lead = float(here[b] - here[a])
        if best is None or lead > best[0]:
            best = (lead, here)
    gap = float(ar_way[at].max() - ar_way[at, b])
    tie = gap <= max(noise, TIE_FLOOR) or reproduced
    note = ""
    if ar_way[at, a] < ar_way[at].max():  # bf16 kernels may differ between processes
        note = "replayed AR's way, the target does not rank AR's own token first here"
    return Diagnosis(
        i,
        a,
        b,
        "tie" if tie else "DEFECT",
        gap=gap,
        noise=noise,
        ar_top2=Top2.of(ar_way[at]),
        other_top2=Top2.of(best[1]),
        reproduced=reproduced,
        scoring=scoring.describe(),
        note=note,
    )


@dataclass(frozen=True)
class Divergence:
    position: int  # index into the generated tokens
    ar_token: int
    other_token: int
    top2_gap: float  # target logit(top-1) - logit(top-2) after AR's prefix, scored AR's way


def _top2_gap(logits: torch.Tensor) -> float:
    top = logits.double().topk(2).values
    return float(top[0] - top[1])


def find_divergence(
    pair: ModelPair, prompt_ids: list[int], ar_ids: list[int], other_ids: list[int]
) -> Divergence | None:
    """None if `other_ids` equals `ar_ids`; else the first divergence and AR's top-2 gap there
    (a quick check for tests; `diagnose` gives the verdict)."""
    i = first_difference(ar_ids, other_ids)
    if i is None:
        return None
    logits = _ar_way(pair, prompt_ids, ar_ids, range(i, i + 1))[0]
    a = ar_ids[i] if i < len(ar_ids) else -1
    b = other_ids[i] if i < len(other_ids) else -1
    return Divergence(i, a, b, _top2_gap(logits))


@torch.inference_mode()
def block_noise(pair: ModelPair, ids: list[int], start: int) -> float:
    """Max |logit| difference for ids[start:] scored one token at a time vs in one block."""
    one = KVSequence(pair.target, pair.vocab_size)
    one.forward(ids[:start])
    singles = torch.stack([one.forward([t])[-1] for t in ids[start:]])  # [n, V]
    block = KVSequence(pair.target, pair.vocab_size)
    block.forward(ids[:start])
    together = block.forward(ids[start:], keep=len(ids) - start)  # [n, V]
    return float((singles - together).abs().max())
