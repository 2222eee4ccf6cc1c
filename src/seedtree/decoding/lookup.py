"""Lookup drafting: free draft candidates from text already written (tree-aware drafting).

A reasoning tree is full of repeated text: the k thoughts of one state are samples of one prompt,
an evaluation prompt quotes the thought it evaluates, thoughts copy numbers and phrases from the
problem. Prompt-lookup decoding proposes such continuations at no draft cost (c = 0): find the
branch's last n tokens elsewhere and propose what followed them there.

`LookupIndex` is an n-gram index over *documents*: every branch's token list (prompt and output,
growing as it commits), those of its siblings in the same engine call, and those of earlier calls
of the same tree when the index is shared (the search passes one per tree, like the prefix
cache). `propose(doc, L)` returns the continuation of up to L tokens after the most recent other
occurrence of the longest suffix of the document (n from `max_ngram` down to `min_ngram`).
Candidates are merged into the branch's token tree beside the draft model's chain; verification
alone decides what is emitted, so any proposal is lossless.
"""

from __future__ import annotations

import threading

MAX_NGRAM = 4  # the longest suffix looked up
MIN_NGRAM = 2  # shorter matches propose mostly noise
PER_KEY = 4  # occurrences kept per n-gram (the most recent)


class LookupIndex:
    def __init__(self, max_tokens: int = 1_000_000) -> None:
        """`max_tokens`: documents kept at most (tokens); past it the oldest documents that no
        branch is writing any more are dropped."""
        self.max_tokens = max_tokens
        self.docs: dict[int, list[int]] = {}  # doc id -> tokens (a live branch's list grows)
        self.live: set[int] = set()
        self._indexed: dict[int, int] = {}  # doc id -> tokens indexed so far
        self._index: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # n-gram -> (doc, end)
        self._next = 0
        self._lock = threading.RLock()  # SEED's drafter threads share one index

    @property
    def tokens(self) -> int:
        return sum(self._indexed.values())

    def register(self, tokens: list[int]) -> int:
        """Index a branch's token list (kept by reference: `sync` indexes what it appends)."""
        with self._lock:
            doc = self._next
            self._next += 1
            self.docs[doc], self._indexed[doc] = tokens, 0
            self.live.add(doc)
            self.sync(doc)
            if self.tokens > self.max_tokens:
                self._evict()
            return doc

    def release(self, doc: int) -> None:
        """The branch is done: its text stays for later lookups until evicted."""
        with self._lock:
            if doc in self.docs:
                self.sync(doc)
            self.live.discard(doc)

    def sync(self, doc: int) -> None:
        """Index the n-grams that end in the tokens appended to `doc` since the last sync."""
        with self._lock:
            tokens, start = self.docs[doc], self._indexed[doc]
            stop = len(tokens)
            for end in range(max(start + 1, MIN_NGRAM), stop + 1):
                for n in range(MIN_NGRAM, min(MAX_NGRAM, end) + 1):
                    occurrences = self._index.setdefault(tuple(tokens[end - n : end]), [])
                    occurrences.append((doc, end))
                    if len(occurrences) > PER_KEY:
                        del occurrences[0]
            self._indexed[doc] = stop

    def propose(self, doc: int, length: int) -> list[int]:
        """Up to `length` tokens that followed the longest suffix of `doc` elsewhere (its own
        earlier text included), the most recent occurrence first; [] when nothing matches."""
        if length <= 0:
            return []
        with self._lock:
            self.sync(doc)
            tokens = self.docs[doc]
            for n in range(min(MAX_NGRAM, len(tokens)), MIN_NGRAM - 1, -1):
                for d, end in reversed(self._index.get(tuple(tokens[-n:]), ())):
                    if d == doc and end >= len(tokens):
                        continue  # the suffix itself
                    continuation = self.docs[d][end : end + length]
                    if continuation:
                        return continuation
            return []

    def _evict(self) -> None:
        """Drop the oldest finished documents until the budget holds, then rebuild the index."""
        total = self.tokens
        for doc in sorted(self.docs):
            if total <= self.max_tokens:
                break
            if doc not in self.live:
                total -= self._indexed.pop(doc)
                del self.docs[doc]
        self._index.clear()
        for doc in self.docs:
            self._indexed[doc] = 0
            self.sync(doc)
