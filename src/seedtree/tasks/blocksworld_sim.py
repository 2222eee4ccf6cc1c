"""A pure-Python simulator of the 4-operator Blocksworld domain (`domain.json`, STRIPS), and the
natural-language forms PlanBench / llm-reasoners use for states and actions.

A state is a frozenset of ground atoms (tuples like ("on", "a", "b")); an action is a tuple
("stack", "a", "b"). `check_plan` applies the actions in order, as VAL does: every precondition
must hold when its action runs; then the goal must hold at the end.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from seedtree.tasks import data_path

Atom = tuple[str, ...]
Action = tuple[str, ...]
State = frozenset[Atom]

COLORS = {"a": "red", "b": "blue", "c": "orange", "d": "yellow", "e": "white"}
LETTERS = {color: letter for letter, color in COLORS.items()}


@dataclass(frozen=True)
class Operator:
    params: tuple[str, ...]
    pre: tuple[Atom, ...]
    add: tuple[Atom, ...]
    delete: tuple[Atom, ...]


@cache
def load_domain() -> dict[str, Operator]:
    raw = json.loads(data_path("blocksworld", "domain.json").read_text())
    return {
        name: Operator(
            tuple(op["params"]),
            tuple(tuple(a) for a in op["pre"]),
            tuple(tuple(a) for a in op["add"]),
            tuple(tuple(a) for a in op["del"]),
        )
        for name, op in raw["actions"].items()
    }


def _ground(atoms: tuple[Atom, ...], binding: dict[str, str]) -> list[Atom]:
    return [(a[0], *(binding[v] for v in a[1:])) for a in atoms]


class IllegalAction(ValueError):
    pass


def apply(state: State, action: Action) -> State:
    """The state after `action`; IllegalAction names the failed precondition."""
    domain = load_domain()
    if action[0] not in domain:
        raise IllegalAction(f"unknown action '{action[0]}'")
    op = domain[action[0]]
    if len(action) - 1 != len(op.params):
        raise IllegalAction(f"{action[0]} takes {len(op.params)} blocks, got {len(action) - 1}")
    binding = dict(zip(op.params, action[1:], strict=True))
    for atom in _ground(op.pre, binding):
        if atom not in state:
            raise IllegalAction(f"precondition ({' '.join(atom)}) does not hold")
    return (state - set(_ground(op.delete, binding))) | set(_ground(op.add, binding))


@dataclass(frozen=True)
class PlanCheck:
    valid: bool  # every action's preconditions held
    goal_reached: bool
    failed_step: int | None  # 1-based, the first illegal action
    reason: str
    state: State

    @property
    def solved(self) -> bool:
        return self.valid and self.goal_reached


def run_plan(init: State, plan: list[Action] | tuple[Action, ...]) -> PlanCheck:
    """Apply `plan` from `init`, stopping at the first illegal action (goal not checked)."""
    state = init
    for step, action in enumerate(plan, start=1):
        try:
            state = apply(state, action)
        except IllegalAction as e:
            reason = f"step {step} ({' '.join(action)}): {e}"
            return PlanCheck(False, False, step, reason, state)
    return PlanCheck(True, False, None, "ok", state)


def check_plan(init: State, plan: list[Action] | tuple[Action, ...], goal: State) -> PlanCheck:
    run = run_plan(init, plan)
    if not run.valid:
        return run
    reached = goal <= run.state
    missing = sorted(" ".join(a) for a in goal - run.state)
    reason = "ok" if reached else "goal not reached: missing (" + "), (".join(missing) + ")"
    return PlanCheck(True, reached, None, reason, run.state)


# -- natural language ----------------------------------------------------------------------------
def _block(letter: str) -> str:
    return f"the {COLORS[letter]} block"


def atom_to_nl(atom: Atom) -> str:
    kind, args = atom[0], atom[1:]
    if kind == "handempty":
        return "the hand is empty"
    if kind == "holding":
        return f"the hand is holding {_block(args[0])}"
    if kind == "clear":
        return f"{_block(args[0])} is clear"
    if kind == "ontable":
        return f"{_block(args[0])} is on the table"
    return f"{_block(args[0])} is on top of {_block(args[1])}"


def state_to_nl(atoms) -> str:
    """Facts sorted by predicate then arguments, joined by ', ' and a final ' and '."""
    facts = [atom_to_nl(a) for a in sorted(atoms)]
    return facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]


def action_to_nl(action: Action) -> str:
    kind, args = action[0], action[1:]
    if kind == "pick-up":
        return f"pick up {_block(args[0])}"
    if kind == "put-down":
        return f"put down {_block(args[0])}"
    if kind == "stack":
        return f"stack {_block(args[0])} on top of {_block(args[1])}"
    return f"unstack {_block(args[0])} from on top of {_block(args[1])}"


_COLOR = "(" + "|".join(LETTERS) + ")"
_ACTION_PATTERNS = [
    ("unstack", re.compile(rf"unstack the {_COLOR} block from (?:on top of )?the {_COLOR} block")),
    ("stack", re.compile(rf"stack the {_COLOR} block on(?: top of)? the {_COLOR} block")),
    ("pick-up", re.compile(rf"pick up the {_COLOR} block")),
    ("put-down", re.compile(rf"put down the {_COLOR} block")),
]


def nl_to_action(text: str) -> Action | None:
    """The first action written in `text` (earliest position), or None."""
    text = " ".join(text.lower().split())
    found = []
    for kind, pattern in _ACTION_PATTERNS:
        for match in pattern.finditer(text):
            if kind == "stack" and text[max(0, match.start() - 2) : match.start()] == "un":
                continue  # the tail of "unstack ... on top of"
            found.append((match.start(), (kind, *(LETTERS[c] for c in match.groups()))))
    return min(found)[1] if found else None
