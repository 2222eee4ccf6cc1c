"""A request's token sequence and the rules that end it (max tokens, context, eos, stop strings).

Every engine commits tokens through `Sequence.commit`, one token at a time, so all engines end a
request at exactly the same token: speculative engines commit several tokens per round, but a stop
string or eos inside them ends the request there and the rest are discarded.
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
        # tokens decoded to look for a stop string that the newest token may complete
        self._stop_window = max((len(s) for s in params.stop), default=0) + 4

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
        tail = self.tokenizer.decode(self.generated[-self._stop_window :])
        return any(s in tail for s in self.params.stop)

    def text(self) -> str:
        text = self.tokenizer.decode(self.generated, skip_special_tokens=True)
        cuts = [text.find(s) for s in self.params.stop if s in text]
        return text[: min(cuts)] if cuts else text
