"""A request's token sequence and the rules that end it (max tokens, context, eos, stop strings).

Every engine commits tokens through `Sequence.commit`, one token at a time, so all engines end a
request at exactly the same token: speculative engines commit several tokens per round, but a stop
string or eos inside them ends the request there and the rest are discarded.

Stop strings are looked for in the text that `text()` returns: decoded without special tokens, so
a stop string split by a special token ends the request exactly where `text()` cuts it.
"""

from __future__ import annotations

from seedtree.decoding.params import SamplingParams


class Sequence:
    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        tokenizer,
        eos_token_ids: tuple[int, ...],
        max_context: int,
    ) -> None:
        self.tokens = list(prompt_ids)  # prompt + generated
        self.prompt_len = len(prompt_ids)
        self.params = params
        self.tokenizer = tokenizer
        self.eos = set() if params.ignore_eos else set(eos_token_ids)
        self.max_len = min(max_context, self.prompt_len + params.max_new_tokens)
        self.finish_reason: str | None = None
        # non-special tokens decoded to look for a stop string the newest token may complete
        self._stop_window = max((len(s) for s in params.stop), default=0) + 4
        self._special = frozenset(getattr(tokenizer, "all_special_ids", ()))

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_len :]

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def remaining(self) -> int:
        """Tokens that may still be generated."""
        return self.max_len - len(self.tokens)

    def commit(self, new_tokens: list[int]) -> int:
        """Append tokens one by one until the request ends; return how many were appended."""
        for i, token in enumerate(new_tokens):
            self.tokens.append(token)
            if token in self.eos:
                self.finish_reason = "stop"
            elif self.params.stop and self._stop_in_tail():
                self.finish_reason = "stop"
            elif len(self.tokens) >= self.max_len:
                self.finish_reason = "length"
            if self.finished:
                return i + 1
        return len(new_tokens)

    def _stop_in_tail(self) -> bool:
        tail = self._decode(self._tail())
        return any(s in tail for s in self.params.stop)

    def _tail(self) -> list[int]:
        """The newest generated tokens, holding `_stop_window` non-special ones (or all)."""
        generated, kept = self.generated, 0
        for start in range(len(generated) - 1, -1, -1):
            kept += generated[start] not in self._special
            if kept == self._stop_window:
                return generated[start:]
        return generated

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def text(self) -> str:
        text = self._decode(self.generated)
        cuts = [text.find(s) for s in self.params.stop if s in text]
        return text[: min(cuts)] if cuts else text
