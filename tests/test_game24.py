"""Game of 24: the data, step checking, and the exact scorer against a brute-force solver's
solutions (accepted in every written form) and their corruptions (rejected)."""

import itertools
from collections import Counter
from fractions import Fraction

import pytest

from seedtree.tasks import get_task
from seedtree.tasks.game24 import (
    Game24,
    check_expression,
    compose,
    left_after,
    load_puzzles,
    parse_step,
)

OPS = "+-*/"


def solve_all(numbers, limit=3):
    """Up to `limit` fully parenthesised expressions over `numbers` equal to 24 (brute force:
    combine any two of the numbers left, every order and operator, until one is left)."""
    found = []

    def search(items):  # items: [(value, text)]
        if len(found) >= limit:
            return
        if len(items) == 1:
            if items[0][0] == 24:
                found.append(items[0][1])
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            rest = [x for n, x in enumerate(items) if n not in (i, j)]
            (a, ta), (b, tb) = items[i], items[j]
            for op in OPS:
                if op == "/" and b == 0:
                    continue
                value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
                search([*rest, (value, f"({ta} {op} {tb})")])

    search([(Fraction(n), str(n)) for n in numbers])
    return found


def fraction_value(text):
    """The exact value of a + - * / expression (test-side, independent of the scorer)."""
    import ast

    def ev(node):
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        a, b = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Div):
            return None if a is None or b in (None, 0) else a / b
        if a is None or b is None:
            return None
        return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(node.op)]

    return ev(ast.parse(text, mode="eval").body)


@pytest.fixture(scope="module")
def solutions():
    """(numbers, expression) for the first 120 puzzles, up to 3 solutions each."""
    cases = []
    for puzzle in load_puzzles()[:120]:
        cases += [(puzzle.numbers, e) for e in solve_all(puzzle.numbers)]
    assert len(cases) > 300
    return cases


def test_the_bundled_puzzles():
    puzzles = get_task("game24").load()
    assert len(puzzles) == 1362 and puzzles[0].numbers == (1, 1, 4, 6)
    assert puzzles[0].id == "game24-1" and puzzles[-1].id == "game24-1362"
    assert all(len(p.numbers) == 4 and all(1 <= n <= 13 for n in p.numbers) for p in puzzles)
    assert all(solve_all(p.numbers, limit=1) for p in puzzles[::50])  # the source's are solvable


def test_the_scorer_accepts_every_solution_in_every_form(solutions):
    for numbers, expression in solutions:
        bare = expression[1:-1]
        forms = [
            expression,
            bare,
            f"{bare} = 24",
            f"Answer: {bare} = 24",
            f"answer:{bare.replace(' ', '')}=24",
            bare.replace("*", "×").replace("/", "÷"),
            f"  {bare.replace('*', 'x')}  ",
            bare.replace("(", "[").replace(")", "]"),
        ]
        for form in forms:
            check = check_expression(form, numbers)
            assert check.ok, (numbers, form, check.reason)
        assert check_expression(bare, tuple(reversed(numbers))).ok  # order does not matter


def test_the_scorer_rejects_reuse_missing_numbers_and_wrong_results(solutions):
    rejected = Counter()
    for numbers, expression in solutions:
        leaves = [t for t in expression.replace("(", " ").replace(")", " ").split() if t.isdigit()]
        # reuse: one number written in place of another (a different one)
        other = next((x for x in leaves if x != leaves[0]), None)
        if other is not None:
            reused = expression.replace(f"({leaves[0]} ", f"({other} ", 1)
            if reused != expression:
                check = check_expression(reused, numbers)
                assert not check.ok and "uses" in check.reason, reused
                rejected["reuse"] += 1
        # a number missing: the expression over three of the four
        missing = check_expression(expression, numbers + (1,))
        assert not missing.ok and "uses" in missing.reason
        rejected["missing"] += 1
        # a wrong result: one operator changed, where that changes the value
        for i, ch in enumerate(expression):
            if ch in OPS and expression[i - 1] == " ":
                for op in OPS.replace(ch, ""):
                    wrong = expression[:i] + op + expression[i + 1 :]
                    if fraction_value(wrong) not in (24, None):
                        check = check_expression(wrong, numbers)
                        assert not check.ok and "not 24" in check.reason, wrong
                        rejected["wrong"] += 1
                break
        # an extra number
        assert not check_expression(f"{expression} * 1", numbers).ok
    assert min(rejected.values()) > 200, rejected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "not an arithmetic expression"),
        ("twenty four", "not an arithmetic expression"),
        ("4 * x6", "not an arithmetic expression"),
        ("4 * 6 * a * 1", "not an expression of + - * /"),
        ("-1 + 1 + 4 * 6", "not an expression of + - * /"),  # unary minus
        ("4.0 * 6 * 1 * 1", "not an expression of + - * /"),
        ("4 ** 1 * 6 * 1", "not an expression of + - * /"),
        ("(1 + 1) * 4 * 6", "equals 48, not 24"),
        ("6 / (1 - 1) + 4", "divides by zero"),
        ("print(24)", "not an expression of + - * /"),
        ("4 * 6 * 1 * 1; 1", "not an arithmetic expression"),
        ("(" * 500 + "4" + ")" * 500, "not an"),
    ],
)
def test_the_scorer_rejects_non_expressions(text, reason):
    check = check_expression(text, (1, 1, 4, 6))
    assert not check.ok and reason in check.reason, check


def test_steps_are_checked_in_rational_arithmetic():
    left = (Fraction(5), Fraction(5), Fraction(5), Fraction(1))
    after = left_after(left, "1 / 5 = 1/5 (left: 5 5 1/5)")
    assert after == (Fraction(5), Fraction(5), Fraction(1, 5))
    assert left_after(after, "5 - 1/5 = 24/5") == (Fraction(5), Fraction(24, 5))
    assert left_after(left, "5 + 5 = 11") is None  # wrong result
    assert left_after(left, "7 + 5 = 12") is None  # 7 is not left
    assert left_after(left, "1 + 1 = 2") is None  # only one 1 left
    assert left_after(left, "five plus five") is None
    assert parse_step("4*6=24") == (Fraction(4), "*", Fraction(6), Fraction(24))
    assert compose((5, 5, 5, 1), ("1 / 5 = 1/5", "5 - 1/5 = 24/5", "5 * 24/5 = 24")) == (
        "5 * (5 - (1 / 5))"
    )
    assert check_expression("5 * (5 - (1 / 5))", (5, 5, 5, 1)).ok


def test_game24_reads_thoughts_values_and_answers():
    task = Game24()
    puzzle = task.get(0)  # 1 1 4 6
    first = task.parse_thought(puzzle, (), "  4 * 6 = 24  (left: whatever)")
    assert first == "4 * 6 = 24 (left: 1 1 24)"  # the numbers left are recomputed
    assert task.parse_proposals(puzzle, (), "1. 1 + 1 = 2\n2) 4 + 6 = 10\n", 3) == [
        "1 + 1 = 2 (left: 4 6 2)",
        "4 + 6 = 10 (left: 1 1 10)",
    ]
    assert [task.parse_value(t) for t in ("Sure", "likely.", "It is impossible", "?")] == [
        10.0,
        5.0,
        0.0,
        None,
    ]
    assert task.value_labels() == {"sure": 10.0, "likely": 5.0, "impossible": 0.0}
    steps = (first, "1 * 1 = 1", "24 * 1 = 24")
    outcome = task.finish(puzzle, steps, ask=None)
    assert outcome.metrics["correct"] and outcome.answer == "(4 * 6) * (1 * 1)"
    answered = (first, "Answer: (1 + 1) * 4 * 6 = 24")
    assert task.is_terminal(puzzle, answered)
    wrong = task.finish(puzzle, answered, ask=None)
    assert not wrong.metrics["correct"] and "equals 48" in wrong.metrics["reason"]
    solution = task.solution_steps(puzzle, "4 * 6 = 24\n1 * 1 = 1\n24 * 1 = 24\nAnswer: 4*6*1*1")
    assert task.solution_answer(puzzle, solution) == "4*6*1*1"
    assert task.finish(puzzle, solution, ask=None).metrics["correct"]
    assert "1 1 4 6" in task.solution_prompt(puzzle).text
