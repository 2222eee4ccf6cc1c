"""The search algorithms beyond BFS/DFS (cot, cot-sc, beam, mcts) and logprob values: every
method builds ar's tree (T=0, and T>0 with coupled sampling); MCTS's UCT and backpropagation on a
hand-built tree; self-consistency's vote; logprob values against a hand computation from the
target's logits; bench-search end to end; bad options are one-line errors."""

import json
import math
from dataclasses import replace
from fractions import Fraction

import pytest
import torch
from conftest import assert_one_line_error, run_cli

from seedtree.bench.search import SearchBenchConfig, parse_budget, run_search_bench, wilson
from seedtree.engine import METHODS as MANY_METHODS
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair
from seedtree.search import ALGORITHMS, EngineConfig, SearchConfig, Tree, solve
from seedtree.search.cot import majority
from seedtree.search.mcts import backpropagate, most_visited_path, q, uct, uct_child, visits
from seedtree.search.results import read_results
from seedtree.search.run import run_dataset
from seedtree.tasks import get_task
from seedtree.tasks.game24 import Game24, apply, show

SPECULATIVE = [m for m in MANY_METHODS if m != "ar"]


@pytest.fixture(scope="module")
def long_pair():
    return tiny_pair(seed=0, context=4096)


def varied(task):
    """The task with value texts read as a fixed function of the text (the tiny model rarely
    writes digits), so that selection depends on the outputs."""

    class Varied(type(task)):
        def parse_value(self, text):
            return float(sum(map(ord, text)) % 11)

    return Varied()


class LegalGame24(Game24):
    """Reads any text as one of the legal next steps (a fixed function of the text), and any
    value text as a number, so the tiny model's trees reach full depth; k samples per state."""

    generation = "sample"

    def parse_thought(self, example, steps, text):
        left = self.left(example, steps)
        if not left or len(left) < 2:
            return super().parse_thought(example, steps, text)
        moves = []
        for i, a in enumerate(left):
            for j, b in enumerate(left):
                for op in "+-*/":
                    if i != j and apply(a, op, b) is not None:
                        moves.append(f"{show(a)} {op} {show(b)} = {show(apply(a, op, b))}")
        return super().parse_thought(example, steps, moves[sum(map(ord, text)) % len(moves)])

    def parse_proposals(self, example, steps, text, k):
        lines = [line for line in text.split("\n") if line.strip()] or [text]
        return [self.parse_thought(example, steps, line) for line in lines][:k]

    def parse_value(self, text):
        return float(sum(map(ord, text)) % 11)


TASKS = {"gsm8k": lambda: varied(get_task("gsm8k")), "game24": LegalGame24}
# whole solutions on GSM8K, searches on Game of 24 (its prompts are short: fast on tiny models)
CASES = [("gsm8k", "cot"), ("gsm8k", "cot-sc"), ("game24", "cot-sc")]
CASES += [("game24", "beam"), ("game24", "mcts")]


def build(pair, task, method, algorithm, temperature=0.0, seed=1, **search):
    options = {"k": 3, "b": 2, "depth": 2, "iterations": 3} | search
    config = SearchConfig(algorithm=algorithm, **options)
    engine = EngineConfig(method=method, max_new_tokens=8, temperature=temperature, seed=seed)
    return solve(pair, task, task.get(0), config, engine)


# -- every method builds ar's tree -------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("task_name, algorithm", CASES)
def test_every_method_builds_the_ar_tree(long_pair, task_name, algorithm, temperature):
    task = TASKS[task_name]()
    k = 2 if algorithm == "mcts" else 3
    reference = build(long_pair, task, "ar", algorithm, temperature, k=k)
    assert reference.final is not None and len(reference.nodes) > 1
    if algorithm in ("beam", "mcts"):
        assert len(reference.nodes) > 4
        assert len({n.value for n in reference.nodes if n.value is not None}) > 1
    for method in SPECULATIVE:
        tree = build(long_pair, task, method, algorithm, temperature, k=k)
        assert tree.signature() == reference.signature(), (task_name, algorithm, method)


def test_the_dispatch_table_names_every_algorithm():
    from seedtree.search import SEARCHES

    assert tuple(SEARCHES) == ALGORITHMS == ("cot", "cot-sc", "bfs", "dfs", "beam", "mcts")


# -- cot and self-consistency ------------------------------------------------------------------
def test_majority_vote_and_tie_rule():
    assert majority(["3", "5", "5", "3", "7"]) == 0  # 3 and 5 tie: 3 is seen first
    assert majority(["5", "3", "3", "5"]) == 0
    assert majority(["7", "3", "5", "5"]) == 2  # 5 wins outright: its first sample
    assert majority([None, "4", None, "4", "2"]) == 1  # None does not vote
    assert majority([None, None]) == 0  # no answer at all: the first sample
    assert majority(["1"]) == 0


def test_cot_sc_tree_holds_k_chains_and_the_votes(long_pair):
    task = TASKS["gsm8k"]()
    tree = build(long_pair, task, "ar", "cot-sc", temperature=0.7, k=4)
    leaves = [n for n in tree.nodes if n.terminal]
    assert len(leaves) == 4 and [c.requests for c in tree.calls] == [4, 1]  # + finish
    answers = [task.solution_answer(task.get(0), tree.steps(n)) for n in leaves]
    chosen = tree.nodes[tree.final]
    assert chosen is leaves[majority(answers)] and chosen.selected
    for leaf, answer in zip(leaves, answers, strict=True):
        votes = answers.count(answer) if answer is not None else 0
        assert leaf.value == pytest.approx(10.0 * votes / 4)
    single = build(long_pair, task, "ar", "cot")
    assert sum(n.terminal for n in single.nodes) == 1 and single.calls[0].requests == 1


def test_solution_steps_read_whole_solutions():
    gsm = get_task("gsm8k")
    steps = gsm.solution_steps(gsm.get(0), "1. She has 3 eggs.\n\n2. 3 * 2 = 6\nThe answer is 6")
    assert steps == ("She has 3 eggs.", "3 * 2 = 6", "The answer is 6")
    assert gsm.solution_answer(gsm.get(0), steps) == "6"
    cw = get_task("creative_writing")
    assert cw.solution_steps(cw.get(0), "Plan: a b\n\nOne.\n\nTwo.") == (
        "Plan: a b",
        "One.\n\nTwo.",
    )
    bw = get_task("blocksworld")
    plan = bw.solution_steps(bw.get(0), "1. pick up the red block\n2. put down the red block")
    assert plan == ("pick up the red block", "put down the red block")


# -- beam ----------------------------------------------------------------------------------------
def test_beam_keeps_b_unfinished_states_and_sets_finished_ones_aside(long_pair):
    task = TASKS["game24"]()
    tree = build(long_pair, task, "ar", "beam", k=3, b=2, depth=3)
    level1 = [n for n in tree.nodes if n.depth == 1]
    expanded = [n for n in level1 if n.children]
    ranked = sorted((n for n in level1 if not n.terminal), key=lambda n: (-n.value, n.id))
    assert {n.id for n in expanded} == {n.id for n in ranked[:2]}
    final = tree.nodes[tree.final]
    assert final.terminal and final.selected  # game24: the third step finishes every branch
    finished = [n for n in tree.nodes if n.terminal]
    assert final.value == max(n.value for n in finished)


# -- mcts ------------------------------------------------------------------------------------------
def hand_tree(values):
    """root -> len(values) children with those values."""
    tree = Tree("t", "0", "", "ar", {})
    root = tree.add(None, "", "")
    for v in values:
        tree.add(root, f"s{v}", "").value = v
    return tree, root


def test_uct_selection_on_a_hand_built_tree():
    tree, root = hand_tree([1.0, 2.0, 3.0])
    a, b, c = (tree.nodes[i] for i in root.children)
    assert uct_child(tree, root, 1.0) is a  # all unvisited: the lower id
    backpropagate([root, a], 0.2)
    assert uct_child(tree, root, 1.0) is b  # unvisited first
    backpropagate([root, b], 0.9)
    backpropagate([root, c], 0.5)
    # Q + c sqrt(ln N / n): N = 3, each child visited once
    bonus = math.sqrt(math.log(3) / 1)
    assert uct(a, 3, 1.0) == pytest.approx(0.2 + bonus)
    assert uct(b, 3, 1.0) == pytest.approx(0.9 + bonus)
    assert uct_child(tree, root, 1.0) is b
    backpropagate([root, b], 0.0)  # b: Q 0.45 over 2 visits; a: 0.2 over 1
    n = 4
    scores = {x.id: q(x) + 2.0 * math.sqrt(math.log(n) / visits(x)) for x in (a, b, c)}
    assert uct_child(tree, root, 2.0).id == max(scores, key=lambda i: (scores[i], -i))
    assert uct_child(tree, root, 0.0) is c  # no exploration: the best mean reward (0.5)
    # equal scores: the lower id
    tree2, root2 = hand_tree([0.0, 0.0])
    x, y = (tree2.nodes[i] for i in root2.children)
    backpropagate([root2, y], 0.5)
    backpropagate([root2, x], 0.5)
    assert uct_child(tree2, root2, 1.0) is x


def test_backpropagation_and_the_most_visited_path():
    tree, root = hand_tree([1.0, 2.0])
    a, b = (tree.nodes[i] for i in root.children)
    grand = tree.add(a, "g", "")
    backpropagate([root, a, grand], 0.7)
    backpropagate([root, b], 0.1)
    backpropagate([root, a], 0.3)
    assert (visits(root), visits(a), visits(grand), visits(b)) == (3, 2, 1, 1)
    assert root.stats["reward"] == pytest.approx(1.1) and q(a) == pytest.approx(0.5)
    assert most_visited_path(tree) == [root, a, grand]


def test_mcts_is_deterministic_for_a_seed_and_counts_its_iterations(long_pair):
    task = TASKS["game24"]()
    one = build(long_pair, task, "ar", "mcts", temperature=0.7, seed=5, iterations=4, k=2)
    two = build(long_pair, task, "ar", "mcts", temperature=0.7, seed=5, iterations=4, k=2)
    assert one.signature() == two.signature()
    assert [n.stats.get("visits") for n in one.nodes] == [n.stats.get("visits") for n in two.nodes]
    assert one.nodes[0].stats["visits"] == 4  # one backpropagation per iteration
    for node in one.nodes[1:]:  # a parent is visited at least as often as its children together
        kids = [one.nodes[i] for i in node.children]
        assert visits(node) >= sum(visits(k) for k in kids)
    chosen = one.chosen_path()
    assert all(n.selected for n in chosen[1:])
    value_only = build(long_pair, task, "ar", "mcts", iterations=4, k=2, rollout="value")
    greedy = build(long_pair, task, "ar", "mcts", iterations=4, k=2)
    assert max(n.depth for n in greedy.nodes) >= max(n.depth for n in value_only.nodes)


# -- logprob values --------------------------------------------------------------------------------
def target_logp(pair, text, extra=()):
    """[V] float64 log-softmax of the target's logits after the prompt text + extra tokens."""
    ids = pair.tokenizer(text, add_special_tokens=False)["input_ids"] + list(extra)
    with torch.no_grad():
        logits = pair.target(input_ids=torch.tensor([ids])).logits[0, -1, : pair.vocab_size]
    return torch.log_softmax(logits.double(), dim=-1)


def hand_value(pair, task, text):
    """The expected label score by hand: the digit labels 0-10 (the tiny tokenizer, like
    Qwen's, has one token per digit: P(10) = p(1) p(0 | 1), and label 1 keeps p(1) - P(10)),
    or word labels by the chain rule over their tokens."""
    tok = pair.tokenizer.convert_tokens_to_ids
    labels = task.value_labels()
    first = target_logp(pair, text).exp()
    if "10" in labels:
        after_one = target_logp(pair, text, [tok("1")]).exp()
        p = {str(d): first[tok(str(d))].item() for d in range(10)}
        p["10"] = p["1"] * after_one[tok("0")].item()
        p["1"] -= p["10"]
    else:
        p = {}
        for label in labels:
            ids = [tok(ch) for ch in label]
            p[label] = math.prod(
                target_logp(pair, text, ids[:i]).exp()[t].item() for i, t in enumerate(ids)
            )
    return sum(labels[k] * v for k, v in p.items()) / sum(p.values())


@pytest.mark.parametrize("task_name", ["gsm8k", "game24"])
def test_logprob_values_equal_a_hand_computation_and_every_method(long_pair, task_name):
    task = TASKS[task_name]()
    settings = {"evaluation": "logprob", "k": 2, "b": 1}
    reference = build(long_pair, task, "ar", "bfs", **settings)
    valued = [n for n in reference.nodes if n.value is not None]
    assert len(valued) >= 4 and len({n.value for n in valued}) > 1
    example = task.get(0)
    for node in valued:
        steps = reference.steps(node)
        expected = task.adjust_value(
            example, steps, hand_value(long_pair, task, task.value_prompt(example, steps).text)
        )
        assert node.value == pytest.approx(expected, abs=1e-12, rel=1e-12), node.id
        assert not node.unparsed
    assert all(c.new_tokens == 0 for c in reference.calls if c.phase == "evaluate")
    sampled = build(long_pair, task, "ar", "bfs", 0.7, **settings)
    # every method on Game of 24's short prompts; GSM8K's digits rule: one other method
    for method in SPECULATIVE if task_name == "game24" else ["seed-batched"]:
        for temperature, ar in ((0.0, reference), (0.7, sampled)):
            tree = build(long_pair, task, method, "bfs", temperature, **settings)
            assert tree.signature() == ar.signature(), (method, temperature)


def test_reads_keep_a_trees_common_start_and_equal_plain_forwards(long_pair, monkeypatch):
    """`engine.reads`: a call's sequences share a start read once into the tree's cache, their
    rests in batched forwards (2 rows each here); the next call keeps the cached start where it
    agrees, crops where it does not; every distribution equals a plain float64 forward."""
    from seedtree.engine import reads as reads_module
    from seedtree.engine.reads import ReadCache, read

    monkeypatch.setattr(reads_module, "MAX_ROWS", 2)

    def plain(ids, n):
        with torch.no_grad():
            logits = long_pair.target(input_ids=torch.tensor([ids])).logits[0, -n:]
        return torch.log_softmax(logits[:, : long_pair.vocab_size].double(), dim=-1)

    def check(sequences, cache):
        done = read(long_pair, sequences, cache)
        for (ids, n), logp in zip(sequences, done.logprobs, strict=True):
            assert logp.dtype == torch.float64 and logp.shape == (n, long_pair.vocab_size)
            assert torch.allclose(logp, plain(ids, n), atol=1e-12, rtol=0)
        return done

    start = [i % 40 + 3 for i in range(30)]
    first = [(start + [5, 6, 7], 2), (start + [8, 9], 1), (start + [5, 1, 2, 3], 3)]
    cache = ReadCache()
    done = check(first, cache)
    assert cache.ids == start and cache.kv.length == len(start)
    # the start once, then 3 + 2 + 4 rest tokens; 3 rows at 2 per forward: 1 + 2 forwards
    assert (done.fed, done.forwards) == (len(start) + 9, 3)
    longer = [(start + [5, 6, 7, 11], 2), (start + [5, 6, 2], 1)]
    done = check(longer, cache)  # extends the cached start by [5, 6]
    assert cache.ids == start + [5, 6] and (done.fed, done.forwards) == (2 + 2 + 1, 2)
    other = [(start[:10] + [3, 3, 3], 1)]  # one sequence: its start is all but its read
    done = check(other, cache)  # cropped to the 10 tokens in common, then 2 more fed
    assert cache.ids == start[:10] + [3, 3] and (done.fed, done.forwards) == (2 + 1, 2)
    assert read(long_pair, [(start, len(start))]).fed == len(start)  # no cache, no start

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(reads_module.RaggedBatch, "forward", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        read(long_pair, first, cache)
    assert cache.kv is None and cache.ids == []  # dropped, never half-filled
    monkeypatch.undo()
    assert check(first, cache).fed == len(start) + 9  # and read afresh


def test_logprob_label_rules():
    from seedtree.search.logprob import expected_value, label_probabilities, prefixes_to_read

    ids = {"1": (1,), "10": (1, 0), "2": (2,), "100": (1, 0, 0)}
    assert prefixes_to_read(ids) == [(1, 0)]
    logp = {(): {1: 0.5, 2: 0.25}, (1,): {0: 0.5}, (1, 0): {0: 0.5}}
    p = label_probabilities(ids, lambda prefix, t: math.log(logp[prefix][t]))
    # P(100) = .125; P(10) = .25 - .125; P(1) = .5 - .25 (only its immediate extension 10)
    assert p == pytest.approx({"1": 0.25, "10": 0.125, "2": 0.25, "100": 0.125})
    scores = {"1": 1.0, "10": 10.0, "2": 2.0, "100": 100.0}
    assert expected_value(p, scores) == pytest.approx((0.25 + 1.25 + 0.5 + 12.5) / 0.75)
    assert expected_value({"a": 0.0}, {"a": 1.0}) is None


# -- records, resume, bench-search ---------------------------------------------------------------
def test_run_records_and_resumes_a_new_algorithm(long_pair, tmp_path):
    task = TASKS["game24"]()
    search = SearchConfig(algorithm="mcts", k=2, depth=2, iterations=2)
    engine = EngineConfig(method="seed-batched", max_new_tokens=6)
    examples = task.load()[:3]
    run_dataset(long_pair, task, examples[:2], tmp_path, search, engine, progress=False)
    summary = run_dataset(
        long_pair, task, examples, tmp_path, search, engine, resume=True, progress=False
    )
    records = read_results(tmp_path / "results.jsonl")
    assert summary.examples == 3 and [r["index"] for r in records] == [0, 1, 2]
    assert records[0]["signature"] == build_signature(long_pair, task, examples[0], search, engine)
    settings = json.loads((tmp_path / "run.json").read_text())["settings"]
    assert settings["algorithm"] == "mcts" and settings["iterations"] == 2
    other = SearchConfig(algorithm="mcts", k=2, depth=2, iterations=3)
    with pytest.raises(SeedtreeError, match="iterations 3 \\(was 2\\)"):
        run_dataset(long_pair, task, examples, tmp_path, other, engine, resume=True)


def build_signature(pair, task, example, search, engine):
    return json.loads(json.dumps(solve(pair, task, example, search, engine).signature()))


def test_bench_search_end_to_end(long_pair, tmp_path, capsys):
    cfg = SearchBenchConfig(
        task="game24",
        limit=2,
        budgets=("cot", "cot-sc:k=2", "beam:k=2,b=2", "mcts:iterations=2,k=2"),
        search=SearchConfig(k=2, depth=2),
        engine=EngineConfig(method="seed-batched", max_new_tokens=6),
        dtype="float64",
        concurrency=2,
    )
    llm = LLM(models=long_pair)
    try:
        report = run_search_bench(llm, cfg, tmp_path)
        one = replace(
            cfg,
            budgets=("mcts:iterations=2,k=2", "bfs:generation=sample,evaluation=logprob"),
            concurrency=1,
        )
        alone = run_search_bench(llm, one, tmp_path / "one")
    finally:
        llm.close()
    # two trees at a time answer as one at a time
    assert alone["rows"][0]["per_problem"] == [
        {**p, "wall_s": q["wall_s"], "eval_s": q["eval_s"]}  # but for timing
        for p, q in zip(
            report["rows"][3]["per_problem"], alone["rows"][0]["per_problem"], strict=True
        )
    ]
    assert alone["rows"][1]["search"]["evaluation"] == "logprob"
    assert alone["rows"][1]["mean_eval_s"] > 0  # sampled thoughts (legal or not) are valued
    saved = json.loads((tmp_path / "bench_search_game24.json").read_text())
    ids = [str(e.id) for e in get_task("game24").load()[:2]]
    assert saved == json.loads(json.dumps(report))
    assert [r["budget"] for r in saved["rows"]] == list(cfg.budgets)
    for row in saved["rows"]:
        assert row["problems"] == 2 and len(row["per_problem"]) == 2
        assert 0 <= row["ci_low"] <= row["accuracy"] <= row["ci_high"] <= 1
        assert row["mean_wall_s"] > 0 and row["mean_new_tokens"] > 0
        assert row["correct_per_hour"] == pytest.approx(row["correct"] / row["total_wall_s"] * 3600)
        assert row["mean_wall_s"] == pytest.approx(row["total_wall_s"] / 2)
        assert [p["id"] for p in row["per_problem"]] == ids  # in problem order
    assert saved["rows"][3]["search"]["iterations"] == 2
    # evaluation time: none for a whole solution; a search spends it once its root has children
    for row in [*saved["rows"], *alone["rows"]]:
        problems = row["per_problem"]
        assert row["mean_eval_s"] == pytest.approx(sum(p["eval_s"] for p in problems) / 2)
        for p in problems:
            evaluated = row["algorithm"] not in ("cot", "cot-sc") and p["nodes"] > 1
            assert (p["eval_s"] > 0) == evaluated and p["eval_s"] < p["wall_s"]
    table = (tmp_path / "bench_search_game24.md").read_text()
    assert "| mcts:iterations=2,k=2 |" in table and "evaluation s / tree" in table
    assert (tmp_path / "bench_search_game24.png").read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    assert err.count("[cot-sc:k=2] game24-") == 2 and "(2/2)" in err
    assert "bench-search game24: budget 2/4 cot-sc:k=2, 2 problems, 2 at a time" in err
    assert f"bench-search game24: cot: {report['rows'][0]['correct']}/2 correct" in err


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(8, 10)  # the textbook value: 0.490-0.943
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 10)[0] == pytest.approx(0.0)


def test_budgets_parse_over_the_base_config():
    base = SearchConfig(k=3, depth=2)
    assert parse_budget("mcts:iterations=4,exploration=0.5", base) == SearchConfig(
        k=3, depth=2, algorithm="mcts", iterations=4, exploration=0.5
    )
    assert parse_budget("cot-sc:k=5", base).k == 5
    with pytest.raises(SeedtreeError, match="'speed=2' is not key=value"):
        parse_budget("bfs:speed=2", base)


# -- bad options -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, needles",
    [
        (["solve", "--iterations", "0"], ["iterations must be >= 1, got 0"]),
        (["run", "--out", "x", "--algorithm", "astar"], ["unknown algorithm 'astar'", "mcts"]),
        (["solve", "--algorithm", "astar"], ["unknown algorithm 'astar'", "--algorithm"]),
        (["solve", "--exploration", "-1"], ["exploration must be in [0, 100]"]),
        (["bench-search", "--budgets", "mcts:iterations=0"], ["iterations must be >= 1"]),
        (["bench-search", "--budgets", "greedy"], ["unknown algorithm 'greedy'"]),
        (["bench-search", "--budgets", "bfs:k=two"], ["k takes a number"]),
    ],
)
def test_bad_options_are_one_line_errors(capsys, tmp_path, argv, needles):
    argv = [a if a != "x" else str(tmp_path / "run") for a in argv]
    code, _, err = run_cli(capsys, *argv, "--target", str(tmp_path / "none"))
    assert_one_line_error(code, err, *needles)


def test_search_config_checks():
    with pytest.raises(SeedtreeError, match="iterations must be >= 1"):
        SearchConfig(iterations=0)
    with pytest.raises(SeedtreeError, match="unknown rollout 'random'"):
        SearchConfig(rollout="random")
    with pytest.raises(SeedtreeError, match="unknown evaluation 'oracle'"):
        SearchConfig(evaluation="oracle")
    assert SearchConfig(evaluation="logprob", algorithm="beam").evaluation == "logprob"


def test_game24_task_values_are_exact_at_one_number_left():
    task = Game24()
    puzzle = task.get(0)  # 1 1 4 6
    steps = ("1 + 1 = 2", "2 * 6 = 12", "12 * 4 = 48")
    assert task.adjust_value(puzzle, steps, 7.0) == 0.0
    win = ("1 + 1 = 2", "2 * 4 = 8", "6 / 2 = 3")  # illegal: 2 was used
    assert task.left(puzzle, win) is None and task.adjust_value(puzzle, win, 7.0) == 0.0
    good = ("4 * 6 = 24", "1 * 1 = 1", "24 * 1 = 24")
    assert task.left(puzzle, good) == (Fraction(24),)
    assert task.adjust_value(puzzle, good, 3.0) == 10.0 and task.is_terminal(puzzle, good)
