"""Creative Writing (Tree of Thoughts' text task, MIT, Shunyu Yao): 4 sentences -> a passage of
4 short paragraphs, paragraph i ending with sentence i.

Two thought steps as in ToT: a plan, then the passage written from the plan; both are chosen by
vote. Scored offline by the hard constraint (`check_constraint`) and by a coherency score 1-10
from the target model as judge (the mean of a few judgements). Every prompt of the task is here.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from seedtree.tasks import data_path
from seedtree.tasks.base import (
    Ask,
    Outcome,
    Prompt,
    Steps,
    Task,
    int_field,
    load_records,
    numbered,
    texts_field,
)


@dataclass(frozen=True)
class Writing:
    index: int
    idx: int
    sentences: tuple[str, ...]  # the 4 required paragraph endings

    @property
    def id(self) -> str:
        return f"creative_writing-{self.idx}"

    @property
    def input(self) -> str:
        return " ".join(self.sentences)


def _writing(index: int, record: dict) -> Writing:
    sentences = tuple(texts_field(record, "sentences"))
    if len(sentences) != 4:
        raise ValueError(f"expected 4 sentences, got {len(sentences)}")
    return Writing(index, int_field(record, "idx"), sentences)


@dataclass(frozen=True)
class ConstraintCheck:
    ok: bool
    paragraphs: int
    endings: tuple[bool, ...]  # per required sentence: does its paragraph end with it?
    reason: str


def _norm(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').split())


def split_paragraphs(passage: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", passage.strip()) if p.strip()]


def check_constraint(passage: str, sentences: tuple[str, ...] | list[str]) -> ConstraintCheck:
    """Exactly len(sentences) paragraphs (blank-line separated), paragraph i ending with sentence
    i after whitespace and quote normalisation."""
    paragraphs = split_paragraphs(passage)
    endings = tuple(
        i < len(paragraphs) and _norm(paragraphs[i]).endswith(_norm(s))
        for i, s in enumerate(sentences)
    )
    if len(paragraphs) != len(sentences):
        reason = f"{len(paragraphs)} paragraphs, {len(sentences)} required"
    elif not all(endings):
        reason = "paragraph " + ", ".join(str(i + 1) for i, e in enumerate(endings) if not e)
        reason += " does not end with its sentence"
    else:
        reason = "ok"
    return ConstraintCheck(reason == "ok", len(paragraphs), endings, reason)


def parse_coherency(text: str) -> float | None:
    match = re.search(r"coherency score is\s*:?\s*\**\s*(\d+)", text, re.IGNORECASE)
    if match and 1 <= int(match.group(1)) <= 10:
        return float(match.group(1))
    return None


class CreativeWriting(Task):
    name = "creative_writing"
    default_depth = 2  # plan, passage
    evaluation = "vote"
    plan_tokens = 96
    passage_tokens = 320
    vote_tokens = 96
    judge_tokens = 160
    judges = 3

    def load(self, path: Path | None = None) -> list[Writing]:
        return load_records(
            path or data_path("creative_writing", "data_100_random_text.jsonl"), _writing
        )

    def question(self, example: Writing) -> str:
        return example.input

    def _instruction(self, example: Writing) -> str:
        return (
            "Write a coherent passage of 4 short paragraphs. The end sentence of each paragraph "
            f"must be, in order:\n{numbered(example.sentences)}"
        )

    def thought_prompt(self, example: Writing, steps: Steps) -> Prompt:
        if not steps:
            text = (
                f"{self._instruction(example)}\n\nDo not write the passage yet. Write a short plan "
                "for it: one line per paragraph, starting with 'Plan:'."
            )
            return Prompt(text, self.plan_tokens, stop=("\n\n\n",))
        text = (
            f"{self._instruction(example)}\n\n{steps[0]}\n\nWrite the passage following the "
            "plan. Separate the paragraphs with a blank line, end each paragraph with its "
            "sentence exactly, and write nothing else."
        )
        return Prompt(text, self.passage_tokens)

    def solution_prompt(self, example: Writing) -> Prompt:
        text = (
            f"{self._instruction(example)}\n\nFirst write a one-line plan starting with 'Plan:', "
            "then a blank line, then the passage. Separate the paragraphs with a blank line, end "
            "each paragraph with its sentence exactly, and write nothing else."
        )
        return Prompt(text, self.plan_tokens + self.passage_tokens)

    def solution_steps(self, example: Writing, text: str) -> Steps:
        """(plan, passage): the first paragraph is the plan when it starts with 'Plan'."""
        parts = split_paragraphs(text)
        if parts and parts[0].lower().startswith("plan"):
            return parts[0], "\n\n".join(parts[1:])
        return "Plan: (none)", "\n\n".join(parts)

    def vote_prompt(self, example: Writing, candidates: list[Steps]) -> Prompt:
        kind = "plan" if len(candidates[0]) == 1 else "passage"
        choices = "\n\n".join(f"Choice {i}:\n{c[-1]}" for i, c in enumerate(candidates, start=1))
        text = (
            f"Task: {self._instruction(example)}\n\nHere are {len(candidates)} choices of "
            f"{kind}. Decide which one is most promising for the task. Explain briefly, then "
            f'end with the line "The best choice is <number>".\n\n{choices}'
        )
        return Prompt(text, self.vote_tokens)

    def is_terminal(self, example: Writing, steps: Steps) -> bool:
        return len(steps) >= 2

    def state_text(self, example: Writing, steps: Steps) -> str:
        return "\n\n".join(steps)

    def finish(self, example: Writing, steps: Steps, ask: Ask) -> Outcome:
        passage = steps[-1] if len(steps) >= 2 else ""
        check = check_constraint(passage, example.sentences)
        scores = []
        if passage:
            judge = Prompt(
                "Analyse the following passage, then end with the line "
                '"Thus the coherency score is <s>", where s is an integer from 1 to 10.\n\n'
                f"Passage:\n{passage}",
                self.judge_tokens,
            )
            [texts] = ask([judge], self.judges)
            scores = [parse_coherency(t) for t in texts]
        parsed = [s for s in scores if s is not None]
        coherency = statistics.mean(parsed) if parsed else 0.0
        return Outcome(
            passage,
            {
                "correct": check.ok,
                "score": coherency,
                "constraint": check.ok,
                "constraint_reason": check.reason,
                "coherency": coherency,
                "coherency_scores": scores,
                "unparsed_judgements": len(scores) - len(parsed),
            },
        )
