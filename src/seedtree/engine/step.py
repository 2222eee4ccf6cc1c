"""The step engine, shaped like vLLM's `LLMEngine`:

    engine.add_request(request_id, prompt_ids, params)
    while engine.has_unfinished():
        for out in engine.step(): ...      # RequestOutput: new tokens, finished, result
    engine.abort(request_id)

One step is one round:
  1) admit waiting requests (up to `max_running`): each takes its longest cached prefix from the
     prefix cache, then the distinct rest of every new prompt is prefilled in ONE draft forward
     (the target sees a prompt of its own with the first verification, in its own forward while
     other branches run; identical prompts are prefilled once for both models); with the batch
     policy only branches the plan lets draft are prefilled in q (the others catch up if they
     ever draft);
  2) every running branch drafts its token tree (ONE batched draft forward per draft step; the
     length per branch follows adaptive speculation);
  3) ONE target forward verifies every branch; each branch accepts and commits;
  4) finished or aborted branches leave at once (their KV is freed); new requests join at the
     next step (continuous batching).
A greedy request identical to one in flight (same prompt and settings) does not become a branch:
it *follows* that request's branch and gets each token it commits (`SpecConfig.dedup`; batched
methods). Aborting the request a branch decodes for leaves the branch running for its followers.
The engine knows nothing about HTTP, tasks or trees. `schedule="serial"` methods run one request
at a time (max_running 1) on the same code. `schedule="threads"` (SEED as in the paper: `seed`,
`mcsd-seed`) replaces 2) and 3) by one FCFS round (`scheduling.fcfs`): drafter threads draft each
branch, the target verifies the drafts one at a time in the order they are ready.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, replace

from seedtree.decoding import speculative
from seedtree.decoding.adaptive import CostModel, plan_depths
from seedtree.decoding.branch import Branch, Request
from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult, TokenLogprob
from seedtree.decoding.sd import check_tree_fits
from seedtree.engine.methods import Method, get_method
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.scheduling.fcfs import FCFSRounds
from seedtree.scheduling.trace import Trace

MAX_RUNNING = 64  # branches decoded together at most; more requests wait their turn
STEPPED = ("serial", "batched", "threads")  # the schedules the step engine runs


@dataclass
class RequestOutput:
    request_id: Hashable
    index: int  # order of arrival
    new_token_ids: list[int]  # committed in this step
    token_ids: list[int]  # committed so far
    finished: bool
    result: GenerationResult | None = None  # when finished
    new_logprobs: list[TokenLogprob] | None = None  # of new_token_ids (SamplingParams.logprobs)


@dataclass
class _Follower:
    """A request decoded by another's branch (an identical greedy request, `SpecConfig.dedup`)."""

    request_id: Hashable
    index: int  # order of arrival
    start: float  # perf_counter at arrival
    sent: int = 0  # tokens given out so far


def check_prompt(pair: ModelPair, prompt_ids: list[int]) -> None:
    if not prompt_ids:
        raise SeedtreeError("empty prompt: give at least one token")
    if any(not isinstance(t, int) or not 0 <= t < pair.vocab_size for t in prompt_ids):
        raise SeedtreeError(f"prompt token ids must be ints in [0, {pair.vocab_size})")
    if len(prompt_ids) >= pair.max_context:
        raise SeedtreeError(
            f"prompt of {len(prompt_ids)} tokens leaves no room in the {pair.max_context}-token "
            "context: shorten it"
        )


class StepEngine:
    def __init__(
        self,
        pair: ModelPair,
        method: str | Method = "seed-batched",
        spec: SpecConfig | None = None,
        prefix_cache: PrefixCache | None = None,
        max_running: int = MAX_RUNNING,
        trace: Trace | None = None,
        lookup: LookupIndex | None = None,
        costs: CostModel | None = None,
    ) -> None:
        """`lookup`: the text index lookup drafting reads (SpecConfig.lookup > 0): shared with
        earlier calls when passed (a tree's), else this engine's own. `costs`: this machine's
        measured costs; with them (and `spec.policy == "batch"`) each round's draft depths are
        planned for the whole batch (`adaptive.plan_depths`), else branch by branch; and rows
        reading prompts of very different lengths go in the forwards that cost least."""
        self.method = method if isinstance(method, Method) else get_method(method)
        if self.method.schedule not in STEPPED:
            raise SeedtreeError(f"method '{self.method.name}' does not run on the step engine")
        self.pair, self.spec = pair, spec or SpecConfig()
        self.shape = self.method.shape(self.spec)
        self.widths = tuple(itertools.accumulate(self.shape, lambda a, b: a * b))  # nodes/depth
        # the batch plan prices one verification of the batch; FCFS rounds verify branch by
        # branch, each branch's draft length its own (SEED's drafter threads)
        threads = self.method.schedule == "threads"
        self.plans = self.spec.adaptive and self.spec.policy == "batch" and not threads
        self.costs = costs
        self.cache = prefix_cache if self.method.prefix_cache else None
        self.lookup = None
        if self.spec.lookup and self.shape:
            self.lookup = lookup if lookup is not None else LookupIndex()
        self.max_running = 1 if self.method.schedule == "serial" else max_running
        self.dedup = self.spec.dedup and self.method.schedule == "batched"
        self.trace = trace or Trace(method=self.method.name)
        self.fcfs = FCFSRounds(_BranchWork()) if threads else None  # SEED's paper mode
        self.waiting: deque[Branch] = deque()
        self.running: list[Branch] = []
        # requests in flight (a finished request is forgotten once its last output is out, so a
        # long-lived engine, e.g. the server's, holds no memory for requests it has served)
        self.ids: dict[Hashable, Branch] = {}
        self.request_of: dict[int, Hashable | None] = {}  # None: aborted, decoded for followers
        # identical greedy requests (SpecConfig.dedup): a key -> the branch decoding it, a
        # branch's index -> the requests following it, a follower's id -> its branch
        self.leaders: dict[tuple, Branch] = {}
        self.followers: dict[int, list[_Follower]] = {}
        self.following: dict[Hashable, Branch] = {}
        self.pending: list[RequestOutput] = []  # made by abort(), sent with the next step
        self._indices = itertools.count()
        self.aborted: list[Branch] = []
        self.rounds = 0
        # (branch, prompt minus its pending token) admitted this step whose target KV goes into
        # the prefix cache after the first verification has computed it
        self.unseen_prompts: list[tuple[Branch, list[int]]] = []
        # the same for the draft: prompts admitted without a q prefill (the batch plan drafted
        # nothing for them), cached once a catch-up has read them
        self.undrafted_prompts: list[tuple[Branch, list[int]]] = []

    # -- requests -------------------------------------------------------------------------------
    def add_request(self, request_id: Hashable, prompt_ids: list[int], params: SamplingParams):
        if not isinstance(params, SamplingParams):
            raise SeedtreeError(
                f"params must be a SamplingParams, got {type(params).__name__}: build one with "
                "SamplingParams(...)"
            )
        if request_id in self.ids or request_id in self.following:
            raise SeedtreeError(f"request id {request_id!r} is already in use: pick another")
        check_prompt(self.pair, prompt_ids)
        if self.method.draft == "tree":
            check_tree_fits(self.pair, prompt_ids, self.spec)
        index = next(self._indices)
        key = self._dedup_key(prompt_ids, params)
        leader = self.leaders.get(key) if key is not None else None
        if leader is not None:
            self.followers[leader.index].append(_Follower(request_id, index, time.perf_counter()))
            self.following[request_id] = leader
            return
        branch = Branch(
            index, self.pair, Request(list(prompt_ids), params), self.spec, self.shape,
            self.method.name,
        )  # fmt: skip
        if self.lookup is not None:
            branch.attach_lookup(self.lookup)
        self.ids[request_id] = branch
        self.request_of[index] = request_id
        if key is not None:
            self.leaders[key] = branch
        self.followers[index] = []
        self.waiting.append(branch)

    def _dedup_key(self, prompt_ids: list[int], params: SamplingParams) -> tuple | None:
        """Requests with one key decode to the same tokens: greedy, the same prompt and settings
        (a greedy request's seed changes nothing). None: this request decodes on its own."""
        if not (self.dedup and params.greedy):
            return None
        return (tuple(prompt_ids), replace(params, seed=None))

    def abort(self, request_id: Hashable) -> bool:
        """Stop a request now and free its KV; its output (finish_reason "cancelled") comes with
        the next step. Unknown or finished ids are ignored (False). A branch that other requests
        follow keeps decoding for them."""
        if request_id in self.following:
            return self._abort_follower(request_id)
        branch = self.ids.get(request_id)
        if branch is None or branch.done:
            return False
        if self.followers[branch.index]:  # the others still need its tokens
            del self.ids[request_id]
            self.request_of[branch.index] = None
            sent = len(branch.seq.generated)  # given out by earlier steps
            self.pending.append(self._cancelled(request_id, branch.index, branch, sent))
            return True
        self._cancel(branch)
        return True

    def _abort_follower(self, request_id: Hashable) -> bool:
        branch = self.following.pop(request_id)
        followers = self.followers[branch.index]
        [f] = [f for f in followers if f.request_id == request_id]
        followers.remove(f)
        self.pending.append(self._cancelled(request_id, f.index, branch, f.sent))
        if not followers and self.request_of[branch.index] is None:
            self._cancel(branch)  # nobody needs its tokens any more
        return True

    def _cancelled(self, request_id, index: int, branch: Branch, sent: int) -> RequestOutput:
        """The output of a request aborted while `branch` goes on: the tokens so far."""
        ids = list(branch.seq.generated)
        stats = DecodeStats(
            method=self.method.name, new_tokens=len(ids), prompt_tokens=branch.stats.prompt_tokens
        )
        result = GenerationResult(ids, branch.seq.text(), "cancelled", stats)
        return RequestOutput(request_id, index, ids[sent:], ids, True, result)

    def _cancel(self, branch: Branch) -> None:
        branch.cancelled = True
        if branch in self.waiting:
            self.waiting.remove(branch)
        if branch in self.running:
            self.running.remove(branch)
        self._free(branch)
        self.aborted.append(branch)

    @property
    def running_requests(self) -> int:
        """Requests being decoded now: those of the running branches and their followers (read
        by the server's gauges from other threads: a snapshot, no lookup that can fail)."""
        return sum(
            (self.request_of.get(b.index) is not None) + len(self.followers.get(b.index, ()))
            for b in list(self.running)
        )

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running or self.aborted or self.pending)

    # -- one round ------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        outputs, self.pending = self.pending, []
        outputs += [o for b in self.aborted for o in self._finished(b)]
        self.aborted = []
        self._admit()
        active = [b for b in self.running if not b.done]
        reported = {b.index for b in active}
        if active:
            before = {b.index: len(b.seq.generated) for b in active}
            if self.fcfs is not None:
                self.fcfs.work.branches = {b.index: b for b in active}
                self.fcfs.round([b.index for b in active], self.rounds, self.trace)
            else:
                self._round(active)
            for b, prompt in self.unseen_prompts:  # the target has seen them now
                if b.p.length >= len(prompt):
                    self.cache.insert(prompt, b.p, None)
            self.unseen_prompts = []
            self.rounds += 1
            outputs += [o for b in active for o in self._update(b, before[b.index])]
        for b in [b for b in self.running if b.done]:
            self.running.remove(b)
            self._free(b)
            if b.index not in reported:  # failed before its first round
                outputs += self._finished(b)
        return outputs

    def _round(self, active: list[Branch]) -> None:
        """Every branch drafts (one batched draft forward per draft step), ONE target forward
        verifies them all."""
        if self.shape:
            t = self.trace.now()
            self._plan(active)
            speculative.draft(active, self.costs)
            self._cache_caught_up()
            drafting = [b.index for b in active if b.tree and b.tree.n_drafted]
            if drafting:
                self.trace.add("draft", drafting, t, self.trace.now(), self.rounds)
        t = self.trace.now()
        counts = [(b.stats.accepted, b.stats.lookup_accepted) for b in active]
        speculative.verify(active, self.costs)
        ids = [b.index for b in active]
        accepted = [  # per branch this round: (from the model, from lookup)
            (b.stats.accepted - a - (b.stats.lookup_accepted - k), b.stats.lookup_accepted - k)
            for b, (a, k) in zip(active, counts, strict=True)
        ]
        self.trace.add("verify", ids, t, self.trace.now(), self.rounds, [0.0] * len(ids), accepted)

    def _plan(self, active: list[Branch]) -> None:
        """This round's draft depth of every branch, planned for the batch (batch policy)."""
        if not self.plans or self.costs is None:
            return
        context = max(b.p.length for b in active)
        alphas = [b.acceptance.alpha for b in active]
        lags = [speculative.lag(b) for b in active]
        remaining = [b.seq.remaining for b in active]
        depths = plan_depths(alphas, self.widths, self.costs, context, lags, remaining)
        for b, depth in zip(active, depths, strict=True):
            b.planned_depth = depth

    def _admit(self) -> None:
        """Waiting requests join: prefix-cache hits loaded, the rest prefilled together."""
        new = []
        while self.waiting and len(self.running) + len(new) < self.max_running:
            new.append(self.waiting.popleft())
        if not new:
            return
        t = self.trace.now()
        for b in new:
            if self.cache is not None:
                b.stats.cached_tokens = self.cache.match(b.seq.tokens[:-1], b.p, b.q)
        if self.shape:  # which new branches draft next round: those get q's prefill
            self._plan([b for b in self.running if not b.done] + new)
        share = self.method.share_prefill
        speculative.run_isolated(lambda bs: speculative.prefill(bs, share, self.costs), new)
        if self.cache is not None:
            for b in new:
                if not b.done:
                    ids, unread = b.seq.tokens[:-1], b.unread_prompt()
                    read = b.q is not None and b.q.length >= len(ids)
                    self.cache.insert(ids, None if unread else b.p, b.q if read else None)
                    if unread:  # the first verification feeds p the rest
                        self.unseen_prompts.append((b, ids))
                    if b.q is not None and not read:  # a catch-up feeds q the rest
                        self.undrafted_prompts.append((b, ids))
        self.trace.add("prefill", [b.index for b in new], t, self.trace.now())
        self.running.extend(new)

    def _cache_caught_up(self) -> None:
        """Prompts a draft has read by catching up go into the prefix cache (q's tree)."""
        waiting = []
        for b, ids in self.undrafted_prompts:
            if b.done:  # left before its draft read the prompt
                continue
            if b.q.length >= len(ids):
                self.cache.insert(ids, None, b.q)
            else:
                waiting.append((b, ids))
        self.undrafted_prompts = waiting

    # -- outputs --------------------------------------------------------------------------------
    def _free(self, b: Branch) -> None:
        """A branch that leaves drops its KV (what was worth keeping is in the prefix cache)."""
        b.p.reset()
        if b.q is not None:
            b.q.reset()

    def _update(self, b: Branch, before: int) -> list[RequestOutput]:
        """What changed for branch b this step, for its request and its followers (their
        results when it is done)."""
        if b.done:
            return self._finished(b, before)
        generated = b.seq.generated
        outputs = self._followed(b)
        rid = self.request_of[b.index]
        if rid is not None:
            logprobs = None if b.logprobs is None else b.logprobs[before:]
            new = generated[before:]
            outputs.append(
                RequestOutput(rid, b.index, new, list(generated), False, new_logprobs=logprobs)
            )
        return outputs

    def _finished(self, b: Branch, before: int | None = None) -> list[RequestOutput]:
        """A branch's last outputs (made once per branch); the engine forgets it here."""
        for key in [k for k, v in self.leaders.items() if v is b]:
            del self.leaders[key]  # later identical requests decode anew
        result = b.result()
        outputs = self._followed(b, result)
        for f in self.followers.pop(b.index):
            del self.following[f.request_id]
        rid, ids = self.request_of.pop(b.index), result.token_ids
        if rid is None:  # aborted; decoded for its followers
            return outputs
        del self.ids[rid]
        new = [] if before is None else ids[before:]
        logprobs = None if result.logprobs is None else result.logprobs[len(ids) - len(new) :]
        return [*outputs, RequestOutput(rid, b.index, new, list(ids), True, result, logprobs)]

    def _followed(self, b: Branch, result: GenerationResult | None = None):
        """The outputs of b's followers: its new tokens for each (and a copy of its result, when
        b is done)."""
        outputs, ids, logprobs = [], list(b.seq.generated), b.logprobs
        for f in self.followers[b.index]:
            copy = None if result is None else _copy_result(result, time.perf_counter() - f.start)
            new_logprobs = None if logprobs is None else list(logprobs[f.sent :])
            out = RequestOutput(
                f.request_id, f.index, ids[f.sent :], list(ids), result is not None, copy,
                new_logprobs,
            )  # fmt: skip
            f.sent = len(ids)
            outputs.append(out)
        return outputs


class _BranchWork:
    """The `Work` FCFS rounds drive: the step engine's running branches, by index."""

    def __init__(self) -> None:
        self.branches: dict[int, Branch] = {}  # this round's, set by the engine before it

    def draft(self, index: int) -> None:
        speculative.draft([self.branches[index]])

    def verify(self, index: int) -> None:
        speculative.verify([self.branches[index]])

    def done(self, index: int) -> bool:
        return self.branches[index].done

    def fail(self, index: int, error: str) -> None:
        self.branches[index].fail(error)


def _copy_result(result: GenerationResult, wall_s: float) -> GenerationResult:
    """A follower's result: the tokens of the request it followed, no work of its own."""
    stats = DecodeStats(
        method=result.stats.method,
        new_tokens=len(result.token_ids),
        wall_s=wall_s,
        prompt_tokens=result.stats.prompt_tokens,
        copied=True,
    )
    logprobs = None if result.logprobs is None else list(result.logprobs)
    return GenerationResult(
        list(result.token_ids), result.text, result.finish_reason, stats, result.prompt,
        result.error, logprobs,
    )  # fmt: skip
