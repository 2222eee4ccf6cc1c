"""Game of 24 (Tree of Thoughts' puzzles, MIT, Shunyu Yao): combine four numbers with + - * / into
24, each number used exactly once.

A thought is one step "a op b = c (left: ...)": two of the numbers left become one. The task
checks every step itself (rational arithmetic): an unreadable or illegal step is valued 0 and
ends its branch, as Blocksworld's illegal actions do; the numbers "left" are recomputed, never
read from the model. A state is valued by the model ("can the numbers left still reach 24?":
sure / likely / impossible); a state with one number left is valued exactly (24 or not). The
answer is the state's "Answer: <expression>" line when it has one, else the expression its steps
compose, and the scorer (`check_expression`) checks it exactly. Every Game of 24 prompt is here.
"""

from __future__ import annotations

import ast
import csv
import io
import re
import sys
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from seedtree.errors import SeedtreeError
from seedtree.files import read_bytes
from seedtree.tasks import data_path
from seedtree.tasks.base import Ask, Outcome, Prompt, Steps, Task

TARGET = 24
OPS = {"+": Fraction.__add__, "-": Fraction.__sub__, "*": Fraction.__mul__, "/": None}
_SYMBOLS = str.maketrans({"×": "*", "x": "*", "X": "*", "÷": "/", "−": "-", "[": "(", "]": ")"})


@dataclass(frozen=True)
class Puzzle:
    index: int
    rank: int  # the source's difficulty rank (1 = solved fastest by people)
    numbers: tuple[int, ...]

    @property
    def id(self) -> str:
        return f"game24-{self.rank}"


def load_puzzles(path: Path | None = None) -> list[Puzzle]:
    """The puzzles of a CSV with the source's columns (`Rank`, `Puzzles`: "1 1 4 6"); a bad row
    is skipped with a warning naming the file and line."""
    path = path or data_path("game24", "24.csv")
    text = read_bytes(path, "data file").decode("utf-8", errors="replace")
    puzzles = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            numbers = tuple(int(x) for x in row["Puzzles"].split())
            if len(numbers) != 4:
                raise ValueError(f"expected 4 numbers, got {len(numbers)}")
            puzzles.append(Puzzle(len(puzzles), int(row["Rank"]), numbers))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"warning: {path}:{number}: skipped malformed row ({e!r})", file=sys.stderr)
    if not puzzles:
        raise SeedtreeError(f"data file {path} holds no usable puzzle: check its format")
    return puzzles


# -- arithmetic -----------------------------------------------------------------------------------
def apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    """a op b, exactly; None for a division by zero."""
    if op == "/":
        return None if b == 0 else a / b
    return OPS[op](a, b)


def show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.strip().strip("()").rstrip("."))
    except (ValueError, ZeroDivisionError):
        return None


_STEP = re.compile(r"^\s*(\S+)\s+([-+*/])\s+(\S+)\s*=\s*(\S+?)\s*(?:\(|$)")
_COMPACT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([-+*/])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?[\d./]+)")


def parse_step(text: str) -> tuple[Fraction, str, Fraction, Fraction] | None:
    """ "a op b = c ..." -> (a, op, b, c); numbers may be fractions ("5/3") when spaced apart from
    the operator; None when the text is no step."""
    line = text.translate(_SYMBOLS)
    for pattern in (_STEP, _COMPACT):
        match = pattern.match(line)
        if match:
            a, b, c = (_number(match.group(i)) for i in (1, 3, 4))
            if None not in (a, b, c):
                return a, match.group(2), b, c
    return None


def left_after(numbers: tuple[Fraction, ...], step: str) -> tuple[Fraction, ...] | None:
    """The numbers left after `step`; None when it is unreadable, uses a number not left, or its
    result is wrong."""
    parsed = parse_step(step)
    if parsed is None:
        return None
    a, op, b, c = parsed
    rest = list(numbers)
    for x in (a, b):
        if x not in rest:
            return None
        rest.remove(x)
    if apply(a, op, b) != c:
        return None
    return (*rest, c)


def _expression(text: str) -> str:
    """The expression of an answer text: "Answer:" and a trailing "= 24" dropped."""
    text = re.sub(r"^\s*answer\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    return text.split("=")[0].translate(_SYMBOLS).strip()


def _leaves(node: ast.AST) -> list[int] | None:
    """The integer leaves of an expression of + - * / and parentheses; None for anything else."""
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
        left, right = _leaves(node.left), _leaves(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    return None


def _value(node: ast.AST) -> Fraction | None:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    a, b = _value(node.left), _value(node.right)
    if a is None or b is None:
        return None
    op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
    return apply(a, op, b)


@dataclass(frozen=True)
class ExpressionCheck:
    ok: bool
    reason: str


def check_expression(text: str, numbers: tuple[int, ...] | list[int]) -> ExpressionCheck:
    """Exactly: an expression of + - * / and parentheses over integers, using each of `numbers`
    once (no other number), equal to 24 in rational arithmetic. "Answer:" before and "= 24"
    after it are allowed; x, × and ÷ read as * and /."""
    expression = _expression(text)
    try:
        tree = ast.parse(expression, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ExpressionCheck(False, "not an arithmetic expression")
    leaves = _leaves(tree)
    if leaves is None:
        return ExpressionCheck(False, "not an expression of + - * / over integers")
    if Counter(leaves) != Counter(numbers):
        used = " ".join(map(str, sorted(leaves)))
        return ExpressionCheck(False, f"uses {used}, not {' '.join(map(str, sorted(numbers)))}")
    value = _value(tree)
    if value is None:
        return ExpressionCheck(False, "divides by zero")
    if value != TARGET:
        return ExpressionCheck(False, f"equals {show(value)}, not {TARGET}")
    return ExpressionCheck(True, "ok")


def compose(numbers: tuple[int, ...], steps: Steps) -> str | None:
    """The expression the (legal) steps build, e.g. "(4 + 8) * (6 - 4)"; None when a step is
    illegal or numbers are left over."""
    pool = [(Fraction(n), str(n)) for n in numbers]
    for step in steps:
        parsed = parse_step(step)
        if parsed is None:
            return None
        a, op, b, c = parsed
        parts = []
        for x in (a, b):
            found = next((i for i, (v, _) in enumerate(pool) if v == x), None)
            if found is None:
                return None
            parts.append(pool.pop(found)[1])
        if apply(a, op, b) != c:
            return None
        pool.append((c, f"({parts[0]} {op} {parts[1]})"))
    if len(pool) != 1:
        return None
    text = pool[0][1]
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


# -- the task -------------------------------------------------------------------------------------
RULES = (
    "Game of 24: combine the numbers with +, -, * and / to make 24, using each number exactly "
    "once. Each step takes two of the numbers left and replaces them with their result."
)
STEP_FORM = '"a op b = c (left: the numbers left)", e.g. "4 * 6 = 24 (left: 1 24)"'


def _numbers_text(numbers) -> str:
    return " ".join(show(Fraction(x)) for x in numbers)


class Game24(Task):
    """Thought = one step; value sure / likely / impossible (10 / 5 / 0); exact scoring."""

    name = "game24"
    default_depth = 3  # four numbers, three steps
    generation = "propose"
    step_tokens = 24
    value_tokens = 4
    words = {"sure": 10.0, "likely": 5.0, "impossible": 0.0}

    def load(self, path: Path | None = None) -> list[Puzzle]:
        return load_puzzles(path)

    def question(self, example: Puzzle) -> str:
        return _numbers_text(example.numbers)

    def left(self, example: Puzzle, steps: Steps) -> tuple[Fraction, ...] | None:
        """The numbers left after `steps`; None when a step is not legal."""
        numbers = tuple(Fraction(n) for n in example.numbers)
        for step in steps:
            if step.lower().startswith("answer"):
                continue
            numbers = left_after(numbers, step)
            if numbers is None:
                return None
        return numbers

    def _situation(self, example: Puzzle, steps: Steps) -> str:
        done = "\n".join(steps) if steps else "(none yet)"
        left = self.left(example, steps)
        now = _numbers_text(left) if left is not None else "(a step above is not legal)"
        return f"{RULES}\n\nInput: {self.question(example)}\nSteps so far:\n{done}\nLeft: {now}"

    def thought_prompt(self, example: Puzzle, steps: Steps) -> Prompt:
        text = f"{self._situation(example, steps)}\n\nWrite only the next step, as {STEP_FORM}."
        return Prompt(text, self.step_tokens, stop=("\n",))

    def propose_prompt(self, example: Puzzle, steps: Steps, k: int) -> Prompt:
        text = (
            f"{self._situation(example, steps)}\n\nPropose {k} different possible next steps, "
            f"one per line, each as {STEP_FORM}, and nothing else."
        )
        return Prompt(text, self.step_tokens * k, stop=("\n\n",))

    def parse_thought(self, example: Puzzle, steps: Steps, text: str) -> str:
        """A legal step in the canonical form (the numbers left recomputed); else the text."""
        line = " ".join(text.split())
        parsed = parse_step(line)
        left = self.left(example, steps)
        after = None if left is None or parsed is None else left_after(left, line)
        if after is None:
            return line
        a, op, b, c = parsed
        return f"{show(a)} {op} {show(b)} = {show(c)} (left: {_numbers_text(after)})"

    def parse_proposals(self, example: Puzzle, steps: Steps, text: str, k: int) -> list[str]:
        return [
            self.parse_thought(example, steps, line)
            for line in super().parse_proposals(example, steps, text, k)
        ]

    def value_prompt(self, example: Puzzle, steps: Steps) -> Prompt:
        left = self.left(example, steps) or ()
        text = (
            f"Numbers: {_numbers_text(left)}\n\nCan these numbers still make 24 with +, -, * and "
            "/, each used exactly once? Reply with one lowercase word, sure, likely or "
            "impossible, and nothing else."
        )
        return Prompt(text, self.value_tokens, stop=("\n",))

    def parse_value(self, text: str) -> float | None:
        found = [(text.lower().find(w), w) for w in self.words if w in text.lower()]
        return self.words[min(found)[1]] if found else None

    def value_labels(self) -> dict[str, float]:
        return dict(self.words)

    def adjust_value(self, example: Puzzle, steps: Steps, value: float) -> float:
        """Illegal -> 0; one number left -> exactly 10 (24) or 0."""
        left = self.left(example, steps)
        if left is None:
            return 0.0
        if len(left) == 1:
            return 10.0 if left[0] == TARGET else 0.0
        return value

    def is_terminal(self, example: Puzzle, steps: Steps) -> bool:
        left = self.left(example, steps)
        answered = bool(steps) and steps[-1].lower().startswith("answer")
        return left is None or len(left) <= 1 or answered

    def state_text(self, example: Puzzle, steps: Steps) -> str:
        return self._situation(example, steps)

    def solution_prompt(self, example: Puzzle) -> Prompt:
        text = (
            f"{RULES}\n\nInput: {self.question(example)}\n\nSolve it: write the steps, one per "
            f'line, each as {STEP_FORM}, then a last line "Answer: <expression> = 24" that '
            "uses each input number exactly once, and nothing else."
        )
        return Prompt(text, self.step_tokens * 5, stop=("\n\n",))

    def answer(self, example: Puzzle, steps: Steps) -> str | None:
        """The state's "Answer:" line's expression, else the one its steps compose."""
        for step in reversed(steps):
            if step.lower().startswith("answer"):
                return _expression(step)
        left = [s for s in steps if not s.lower().startswith("answer")]
        return compose(example.numbers, tuple(left))

    def solution_answer(self, example: Puzzle, steps: Steps) -> str | None:
        expression = self.answer(example, steps)
        return None if expression is None else "".join(expression.split())

    def finish(self, example: Puzzle, steps: Steps, ask: Ask) -> Outcome:
        expression = self.answer(example, steps)
        check = (
            check_expression(expression, example.numbers)
            if expression is not None
            else ExpressionCheck(False, "no expression: a step is illegal or numbers are left")
        )
        return Outcome(
            expression or "",
            {"correct": check.ok, "score": float(check.ok), "reason": check.reason},
        )
