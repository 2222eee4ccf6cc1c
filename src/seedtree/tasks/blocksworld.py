"""Blocksworld (PlanBench instances, MIT; splits and gold plans from llm-reasoners, Apache-2.0).

A thought is the next action in the dataset's natural-language form ("unstack the red block from
on top of the blue block"). The simulator (`blocksworld_sim`) keeps the world state, as RAP's
world model does, so each prompt shows the current state; a state is valued 0-10 by the model,
and an action that is not legal or not readable is valued 0 and ends its branch. The final plan
is checked by the simulator: valid plan? goal reached? Every Blocksworld prompt is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seedtree.tasks import data_path
from seedtree.tasks.base import (
    Ask,
    Outcome,
    Prompt,
    Steps,
    Task,
    atoms_field,
    load_records,
    text_field,
)
from seedtree.tasks.blocksworld_sim import (
    Action,
    State,
    action_to_nl,
    check_plan,
    nl_to_action,
    run_plan,
    state_to_nl,
)


@dataclass(frozen=True)
class Instance:
    index: int
    id: str
    init: State
    goal: State
    gold_plan: tuple[Action, ...]
    init_nl: str
    goal_nl: str

    @property
    def steps(self) -> int:
        return len(self.gold_plan)


def _instance(index: int, record: dict) -> Instance:
    return Instance(
        index,
        text_field(record, "id"),
        frozenset(atoms_field(record, "init")),
        frozenset(atoms_field(record, "goal")),
        tuple(atoms_field(record, "gold_plan")),
        text_field(record, "init_nl"),
        text_field(record, "goal_nl"),
    )


RULES = (
    "I am playing with a set of blocks where I need to arrange the blocks into stacks. "
    "I can pick up a block, unstack a block from on top of another block, put down a block, or "
    "stack a block on top of another block. I can only pick up or unstack one block at a time, "
    "only if my hand is empty and the block is clear (nothing on top of it); I can pick up a "
    "block only if it is on the table. I can put down or stack only a block I am holding, and "
    "stack it only on a clear block."
)


def plan_of(steps: Steps) -> list[Action | None]:
    return [nl_to_action(s) for s in steps]


class Blocksworld(Task):
    name = "blocksworld"
    default_depth = 4
    action_tokens = 24
    value_tokens = 6

    def load(self, path: Path | None = None) -> list[Instance]:
        return load_records(path or data_path("blocksworld", "instances.jsonl"), _instance)

    def depth(self, example: Instance) -> int:
        return example.steps  # the optimal plan length, as RAP's step budget

    def question(self, example: Instance) -> str:
        return f"Initial state: {example.init_nl}.\nGoal: {example.goal_nl}."

    def _situation(self, example: Instance, steps: Steps) -> str:
        plan = "\n".join(steps) if steps else "(no actions yet)"
        check = run_plan(example.init, [a for a in plan_of(steps) if a is not None])
        return (
            f"{RULES}\n\nAs initial conditions I have that, {example.init_nl}.\n"
            f"My goal is to have that {example.goal_nl}.\n\nMy actions so far:\n{plan}\n\n"
            f"Now {state_to_nl(check.state)}."
        )

    def thought_prompt(self, example: Instance, steps: Steps) -> Prompt:
        text = (
            f"{self._situation(example, steps)}\n\nWhat is the next action? Reply with one "
            'action only, in a form like "unstack the red block from on top of the blue '
            'block", "stack the red block on top of the blue block", "pick up the red block" '
            'or "put down the red block".'
        )
        return Prompt(text, self.action_tokens, stop=("\n",))

    def parse_thought(self, example: Instance, steps: Steps, text: str) -> str:
        action = nl_to_action(text)
        return action_to_nl(action) if action else " ".join(text.split())

    def solution_prompt(self, example: Instance) -> Prompt:
        text = (
            f"{self._situation(example, ())}\n\nWrite the whole plan: one action per line, each "
            'in a form like "unstack the red block from on top of the blue block", "stack the '
            'red block on top of the blue block", "pick up the red block" or "put down the red '
            'block", and nothing else.'
        )
        return Prompt(text, self.action_tokens * (example.steps + 2), stop=("\n\n",))

    def value_prompt(self, example: Instance, steps: Steps) -> Prompt:
        text = (
            f"{self._situation(example, steps)}\n\nHow close is the current state to the goal, "
            "and are the actions so far useful for reaching it? Reply with one integer from 0 "
            "(useless) to 10 (goal reached), and nothing else."
        )
        return Prompt(text, self.value_tokens, stop=("\n",))

    def _legal(self, example: Instance, steps: Steps) -> bool:
        plan = plan_of(steps)
        return None not in plan and run_plan(example.init, plan).valid

    def adjust_value(self, example: Instance, steps: Steps, value: float) -> float:
        return value if self._legal(example, steps) else 0.0

    def is_terminal(self, example: Instance, steps: Steps) -> bool:
        if not self._legal(example, steps):
            return True  # a dead end
        return check_plan(example.init, plan_of(steps), example.goal).goal_reached

    def state_text(self, example: Instance, steps: Steps) -> str:
        return self._situation(example, steps)

    def finish(self, example: Instance, steps: Steps, ask: Ask) -> Outcome:
        plan = plan_of(steps)
        if None in plan:
            step = plan.index(None) + 1
            metrics = {"valid": False, "goal_reached": False, "reason": f"step {step} unreadable"}
        else:
            check = check_plan(example.init, plan, example.goal)
            metrics = {
                "valid": check.valid,
                "goal_reached": check.goal_reached,
                "reason": check.reason,
            }
        solved = metrics["valid"] and metrics["goal_reached"]
        return Outcome("\n".join(steps), metrics | {"correct": solved, "score": float(solved)})
