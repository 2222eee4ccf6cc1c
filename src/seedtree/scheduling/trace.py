"""Timeline trace of a many-request run: who drafted and who was verified, when.

Every interval is wall-clock seconds from the start of the run. A verification lists every branch
it verified (more than one when batched) and each branch's queue wait (arrival -> start). The trace
is the evidence for concurrency claims: `overlaps` finds a branch drafting while the target
verifies another branch.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Interval:
    kind: str  # "prefill" | "draft" | "verify" | "decode"
    branches: tuple[int, ...]
    start: float
    end: float
    round: int = -1
    waits: tuple[float, ...] = ()  # verify only: queue wait of each branch
    # verify only (step engine): per branch, draft tokens accepted from (the model, lookup)
    accepted: tuple[tuple[int, int], ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Trace:
    method: str = ""
    t0: float = field(default_factory=time.perf_counter)
    intervals: list[Interval] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def add(
        self, kind: str, branches, start: float, end: float, round: int = -1, waits=(), accepted=()
    ) -> None:
        with self._lock:
            self.intervals.append(
                Interval(kind, tuple(branches), start, end, round, tuple(waits), tuple(accepted))
            )

    def of_kind(self, kind: str) -> list[Interval]:
        return sorted((i for i in self.intervals if i.kind == kind), key=lambda i: i.start)

    @property
    def wall(self) -> float:
        return max((i.end for i in self.intervals), default=0.0)

    def target_busy_fraction(self) -> float:
        busy = sum(i.duration for i in self.intervals if i.kind in ("verify", "decode", "prefill"))
        return busy / self.wall if self.wall else 0.0

    def mean_queue_wait(self) -> float:
        waits = [w for i in self.of_kind("verify") for w in i.waits]
        return sum(waits) / len(waits) if waits else 0.0

    def overlaps(self) -> list[tuple[Interval, Interval]]:
        """(draft of branch i, verification not of i) pairs that ran at the same time."""
        pairs = []
        for v in self.of_kind("verify"):
            for d in self.of_kind("draft"):
                if d.branches[0] not in v.branches and d.start < v.end and v.start < d.end:
                    pairs.append((d, v))
        return pairs

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "wall_s": self.wall,
            "target_busy_fraction": self.target_busy_fraction(),
            "mean_queue_wait_s": self.mean_queue_wait(),
            "overlapping_draft_verify_pairs": len(self.overlaps()),
            "intervals": [asdict(i) for i in sorted(self.intervals, key=lambda i: i.start)],
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> Trace:
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, data: dict) -> Trace:
        trace = cls(method=data["method"])
        for i in data["intervals"]:
            trace.add(i["kind"], i["branches"], i["start"], i["end"], i["round"], i["waits"])
        return trace


COLORS = {"prefill": "#9e9e9e", "draft": "#4c72b0", "verify": "#dd8452", "decode": "#dd8452"}


def save_gantt(trace: Trace, path: Path, title: str | None = None) -> None:
    """One row per branch: drafts (blue), verifications (orange; batched ones span rows), queue
    waits (thin grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    branches = sorted({b for i in trace.intervals for b in i.branches})
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(branches) + 1.6))
    for i in trace.intervals:
        for k, b in enumerate(i.branches):
            ax.broken_barh(
                [(i.start, i.duration)],
                (b - 0.35, 0.7),
                color=COLORS[i.kind],
                edgecolor="black",
                linewidth=0.3,
            )
            if i.waits:
                ax.broken_barh(
                    [(i.start - i.waits[k], i.waits[k])], (b - 0.05, 0.1), color="#bbbbbb"
                )
    ax.set_yticks(branches, [f"branch {b}" for b in branches])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[k]) for k in ("prefill", "draft", "verify")]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="#bbbbbb"))
    ax.legend(
        handles,
        ["prefill", "draft (q)", "verify (p)", "queue wait"],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 - 0.5 / len(branches)),
        fontsize=8,
        ncol=4,
    )
    ax.set_title(
        title
        or f"{trace.method}: target busy {trace.target_busy_fraction():.0%}, "
        f"mean queue wait {trace.mean_queue_wait() * 1000:.0f} ms"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
