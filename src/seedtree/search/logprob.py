"""Values read from the target's probabilities (`--evaluation logprob`): one forward of the value
prompt, no decoding.

The task names its value labels and their scores (`Task.value_labels`: "0".."10", or words such
as sure / likely / impossible). Each label is the token ids the tokenizer gives its text, as the
start of the answer (after the chat template's assistant turn when the pair has one). Then:

- P(label) = prod_i p(t_i | prompt, t_<i): the chain rule over the label's tokens, p the target's
  softmax (log-softmax in float64). A one-token label needs the prompt's last position only; a
  longer one the forward of prompt + its tokens but the last.
- A label whose tokens begin another label's ("1" and "10" where digits are one token each) keeps
  only the mass that does not continue into the longer one: P("1") - P("10"), at least 0.
- value = sum(score * P) / sum(P) over the labels: the expected score under the target's
  distribution renormalised over the labels (0 when they hold no mass, counted as unparsed).

Deterministic and continuous, and the same for every decoding method: no method takes part.
This module is the arithmetic; `search.engine.Engine.score` runs the forwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable

TokenIds = tuple[int, ...]


def prefixes_to_read(label_ids: dict[str, TokenIds]) -> list[TokenIds]:
    """The token sequences to forward after the prompt (each label's tokens but its last), the
    ones contained in a longer one left out: the longer forward reads them too."""
    needed = {ids[:-1] for ids in label_ids.values()}
    return sorted(p for p in needed if not any(q != p and q[: len(p)] == p for q in needed))


def label_probabilities(
    label_ids: dict[str, TokenIds], logp: Callable[[TokenIds, int], float]
) -> dict[str, float]:
    """Each label's probability as the answer (see the module's rules); `logp(prefix, token)`:
    the target's log-probability of `token` after the prompt and `prefix`."""
    full = {
        label: math.exp(sum(logp(ids[:i], t) for i, t in enumerate(ids)))
        for label, ids in label_ids.items()
    }
    own = {}
    for label, ids in label_ids.items():
        longer = [
            m
            for m, other in label_ids.items()
            if len(other) > len(ids) and other[: len(ids)] == ids
        ]
        # the immediate extensions only: a label between ids and a longer one takes its mass
        immediate = [
            m
            for m in longer
            if not any(n != m and label_ids[m][: len(label_ids[n])] == label_ids[n] for n in longer)
        ]
        own[label] = max(0.0, full[label] - sum(full[m] for m in immediate))
    return own


def expected_value(probabilities: dict[str, float], scores: dict[str, float]) -> float | None:
    """sum(score * P) / sum(P); None when the labels hold no probability."""
    total = sum(probabilities.values())
    if total <= 0:
        return None
    return sum(scores[label] * p for label, p in probabilities.items()) / total
