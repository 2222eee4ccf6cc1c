"""Task logic: GSM8K answers, the Blocksworld simulator, the Creative Writing constraint,
value/vote parsing, and bad data (malformed lines skipped with a warning, bad index, bad task)."""

import json

import pytest

from seedtree.errors import SeedtreeError
from seedtree.tasks import get_task
from seedtree.tasks.base import Task
from seedtree.tasks.blocksworld_sim import (
    action_to_nl,
    check_plan,
    nl_to_action,
    state_to_nl,
)
from seedtree.tasks.creative_writing import check_constraint, parse_coherency
from seedtree.tasks.gsm8k import answer_matches, extract_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 1,234.", 1234.0),
        ("She makes $18 every day.", 18.0),
        ("It costs $1,234.50 in total", 1234.5),
        ("The temperature is -5 degrees", -5.0),
        ("0.5 of 10 is 5", 5.0),
        ("about .75", 0.75),
        ("First 3, then 4, so the answer is 7", 7.0),
        ("no number here", None),
        ("", None),
    ],
)
def test_gsm8k_answer_extraction(text, expected):
    assert extract_answer(text) == expected


def test_gsm8k_gold_and_match():
    task = get_task("gsm8k")
    problem = task.get(0)
    assert problem.gold == 18.0 and problem.id == "gsm8k-0"
    assert answer_matches(extract_answer("The answer is $18.00"), problem.gold)
    assert not answer_matches(None, problem.gold)
    assert not answer_matches(17.0, problem.gold)


def test_blocksworld_accepts_all_602_gold_plans():
    task = get_task("blocksworld")
    instances = task.load()
    assert len(instances) == 602
    for inst in instances:
        check = check_plan(inst.init, inst.gold_plan, inst.goal)
        assert check.valid and check.goal_reached, inst.id
        assert state_to_nl(inst.init) == inst.init_nl and state_to_nl(inst.goal) == inst.goal_nl


def test_blocksworld_natural_language_round_trip():
    for inst in get_task("blocksworld").load()[:100]:
        for action in inst.gold_plan:
            assert nl_to_action(action_to_nl(action)) == action
    assert nl_to_action("Next: unstack the red block from on top of the blue block.") == (
        "unstack",
        "a",
        "b",
    )
    assert nl_to_action("I will stack the white block on the yellow block") == ("stack", "e", "d")
    assert nl_to_action("Pick up the Orange block") == ("pick-up", "c")
    assert nl_to_action("move something") is None


def test_blocksworld_rejects_illegal_action_naming_step_and_precondition():
    inst = get_task("blocksworld").get(0)  # the blue block sits on the orange block
    plan = [("pick-up", "c")]  # orange is not clear
    check = check_plan(inst.init, plan, inst.goal)
    assert not check.valid and check.failed_step == 1
    assert check.reason == "step 1 (pick-up c): precondition (clear c) does not hold"
    plan = [("unstack", "b", "c"), ("stack", "b", "a"), ("pick-up", "b")]
    check = check_plan(inst.init, plan, inst.goal)
    assert not check.valid and check.failed_step == 3
    assert "step 3" in check.reason and "precondition" in check.reason


def test_blocksworld_legal_plan_that_misses_the_goal():
    inst = get_task("blocksworld").get(0)
    plan = [("unstack", "b", "c"), ("put-down", "b")]
    check = check_plan(inst.init, plan, inst.goal)
    assert check.valid and not check.goal_reached
    assert check.reason == "goal not reached: missing (on c b)"
    # and every gold plan without its last action misses the goal
    for inst in get_task("blocksworld").load()[:50]:
        assert not check_plan(inst.init, inst.gold_plan[:-1], inst.goal).goal_reached


def test_blocksworld_finish_scores_plans():
    task = get_task("blocksworld")
    inst = task.get(0)
    gold = tuple(action_to_nl(a) for a in inst.gold_plan)
    assert task.finish(inst, gold, None).metrics["correct"]
    assert task.is_terminal(inst, gold)
    out = task.finish(inst, gold[:2] + ("pick up the red block",), None)
    assert out.metrics["valid"] and not out.metrics["goal_reached"]
    out = task.finish(inst, ("dance",), None)
    assert out.metrics == {
        "valid": False,
        "goal_reached": False,
        "reason": "step 1 unreadable",
        "correct": False,
        "score": 0.0,
    }
    assert task.adjust_value(inst, ("pick up the orange block",), 9.0) == 0.0
    assert task.depth(inst) == inst.steps


SENTENCES = ("The cat sat.", "It rained all day.", "Nobody came.", "The end was near.")


def test_creative_writing_constraint_passes():
    passage = (
        "Once upon a time there was a mat.   The cat sat.\n\n"
        "Clouds gathered.\nIt rained all day.\n\n"
        "We waited for guests. Nobody came.\n  \n"
        "Night fell and The end was near."
    )
    check = check_constraint(passage, SENTENCES)
    assert check.ok and check.paragraphs == 4 and check.reason == "ok"
    curly = passage.replace("It rained", "It rained").replace("The cat sat.", "The cat  sat.")
    assert check_constraint(curly, SENTENCES).ok
    quoted = check_constraint("a ‘b’ c.\n\nd\n\ne\n\nf", ("a 'b' c.", "d", "e", "f"))
    assert quoted.ok


def test_creative_writing_constraint_failures():
    three = "The cat sat.\n\nIt rained all day.\n\nNobody came. The end was near."
    check = check_constraint(three, SENTENCES)
    assert not check.ok and check.reason == "3 paragraphs, 4 required"
    wrong = "The cat sat.\n\nIt rained all day. Then sun.\n\nNobody came.\n\nThe end was near."
    check = check_constraint(wrong, SENTENCES)
    assert not check.ok and check.endings == (True, False, True, True)
    assert check.reason == "paragraph 2 does not end with its sentence"
    assert not check_constraint("", SENTENCES).ok


def test_value_vote_and_judge_parsing():
    task = get_task("gsm8k")
    assert task.parse_value("7") == 7.0
    assert task.parse_value("I'd say 8/10.") == 8.0
    assert task.parse_value("Score: 10") == 10.0
    assert task.parse_value("42 then 3") == 3.0
    assert task.parse_value("very likely") is None
    assert Task.parse_vote(task, "Analysis... The best choice is 2", 3) == 1
    assert Task.parse_vote(task, "The best choice is 5", 3) is None
    assert Task.parse_vote(task, "I like the first", 3) is None
    assert parse_coherency("Fine.\nThus the coherency score is 7") == 7.0
    assert parse_coherency("Thus the coherency score is 11") is None


def test_malformed_data_lines_are_skipped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "gsm8k.jsonl"
    lines = [
        json.dumps({"question": "1+1?", "answer": "2\n#### 2"}),
        "{not json",
        json.dumps({"question": "no answer field"}),
        json.dumps({"question": "bad gold", "answer": "#### many"}),
        json.dumps({"question": "2+2?", "answer": "#### 4"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    problems = get_task("gsm8k").load(path)
    assert [p.question for p in problems] == ["1+1?", "2+2?"]
    assert [p.index for p in problems] == [0, 1]
    err = capsys.readouterr().err
    for number in (2, 3, 4):
        assert f"warning: {path}:{number}: skipped malformed line" in err
    bad_cw = tmp_path / "cw.jsonl"
    bad_cw.write_text(json.dumps({"idx": 0, "sentences": ["only one."]}) + "\n")
    with pytest.raises(SeedtreeError, match="no usable example"):
        get_task("creative_writing").load(bad_cw)


def test_unknown_task_and_index_out_of_range():
    with pytest.raises(SeedtreeError, match="unknown task 'chess': choose one of gsm8k"):
        get_task("chess")
    with pytest.raises(SeedtreeError, match=r"gsm8k index 5000 is out of range: use 0\.\.1318"):
        get_task("gsm8k").get(5000)
    with pytest.raises(SeedtreeError, match="out of range"):
        get_task("blocksworld").get(-1)
    with pytest.raises(SeedtreeError, match="does not exist"):
        get_task("gsm8k").load(__import__("pathlib").Path("/nonexistent.jsonl"))
