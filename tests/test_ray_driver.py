"""`seedtree run --ray`'s driver loop (`distributed.ray_run.drive`) on a fake Ray, in this process
and without Ray installed: dynamic hand-out, a lost replica's problem tried again on another one,
MAX_TRIES then an error record, load failures as one line, Ctrl-C; every problem recorded once;
and without Ray, every Ray option is one line. The real thing (actors, `ray.kill`, Ray Serve) is
`test_ray.py`."""

import sys
from types import SimpleNamespace

import pytest
from conftest import assert_one_line_error, run_cli

from seedtree.distributed.cluster import RayConfig
from seedtree.distributed.ray_run import MAX_TRIES, Loaded, Solved, Work, drive
from seedtree.errors import SeedtreeError
from seedtree.llm import ModelSettings
from seedtree.search import EngineConfig, SearchConfig
from seedtree.search.results import open_run, read_results
from seedtree.search.run import summarize
from seedtree.tasks import get_task

TASK = get_task("gsm8k")
EXAMPLES = TASK.load()[:5]
WORK = Work(ModelSettings(), TASK, SearchConfig(k=2, depth=1), EngineConfig(method="ar"), None, 1)


class Died(Exception):
    """The fake's RayActorError: the actor (or its worker) is gone."""


class TaskError(Exception):
    """The fake's RayTaskError (never raised here)."""


class Ref:
    def __init__(self, actor, thunk) -> None:
        self.actor, self.thunk = actor, thunk


class Method:
    def __init__(self, actor, fn) -> None:
        self.actor, self.fn = actor, fn

    def remote(self, *args) -> Ref:
        return Ref(self.actor, lambda: self.fn(self.actor, *args))


class Actor:
    def __init__(self, ray, index: int) -> None:
        self.index, self.dead = index, False
        self.load = Method(self, ray.load)
        self.solve = Method(self, ray.solve)


class ActorClass:
    def __init__(self, ray) -> None:
        self.ray = ray

    def options(self, **options) -> "ActorClass":
        return self

    def remote(self, work) -> Actor:
        actor = Actor(self.ray, len(self.ray.actors))
        self.ray.actors.append(actor)
        return actor


class FakeRay:
    """Just enough of Ray for `drive`: calls run when their result is asked for, oldest first.
    An actor that takes a problem in `deadly` dies (every time; `die_once`: the first time);
    `load_error`: every replica's models are missing; `load_dies`: every replica dies loading."""

    def __init__(self, deadly=(), die_once=(), load_error=None, load_dies=False) -> None:
        self.exceptions = SimpleNamespace(RayActorError=Died, RayTaskError=TaskError)
        self.deadly, self.die_once = set(deadly), set(die_once)
        self.load_error, self.load_dies = load_error, load_dies
        self.actors: list[Actor] = []
        self.solved: list[tuple[int, str]] = []  # (actor, problem id) of each finished call
        self.most = 0  # calls in flight at most

    def remote(self, cls) -> ActorClass:
        return ActorClass(self)

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": 8.0}}]

    def wait(self, refs, num_returns=1):
        self.most = max(self.most, len(refs))
        return refs[:1], refs[1:]

    def get(self, ref: Ref):
        if ref.actor.dead:
            raise Died(f"actor {ref.actor.index} is dead\n(the rest of Ray's message)")
        return ref.thunk()

    def kill(self, actor: Actor) -> None:
        actor.dead = True

    def load(self, actor: Actor) -> Loaded:
        if self.load_dies:
            actor.dead = True
            raise Died(f"actor {actor.index} died while loading")
        return Loaded(f"10.0.0.{actor.index}", self.load_error)

    def solve(self, actor: Actor, example) -> Solved:
        key = str(example.id)
        if key in self.deadly or key in self.die_once:
            self.die_once.discard(key)
            actor.dead = True
            raise Died(f"the worker of actor {actor.index} crashed")
        self.solved.append((actor.index, key))
        record = {"id": key, "index": example.index, "correct": False, "score": 0.0}
        return Solved(record | {"wall_s": 0.1, "new_tokens": 3, "unparsed_values": 0})


def run(tmp_path, ray, replicas=2, on_record=None, trees=1):
    with open_run(tmp_path, {"fake": True}) as folder:
        config = RayConfig(replicas=replicas, trees=trees)
        return drive(ray, WORK, config, list(EXAMPLES), folder, False, on_record=on_record)


def ids_once(tmp_path) -> list[str]:
    ids = [r["id"] for r in read_results(tmp_path / "results.jsonl")]
    assert len(ids) == len(set(ids)), ids
    return sorted(ids)


def test_every_problem_once_spread_over_the_replicas(tmp_path):
    ray = FakeRay()
    result, interrupted = run(tmp_path, ray, replicas=2)
    assert not interrupted and result.lost == 0 and result.started == 2
    assert ids_once(tmp_path) == sorted(str(e.id) for e in EXAMPLES)
    assert {actor for actor, _ in ray.solved} == {0, 1}  # both replicas worked
    assert result.nodes == ["10.0.0.0", "10.0.0.1"]
    assert all(a.dead for a in ray.actors)  # killed at the end


def test_a_lost_replicas_problem_runs_again_on_another(tmp_path):
    ray = FakeRay(die_once={"gsm8k-1"})
    result, _ = run(tmp_path, ray)
    assert result.lost == 1 and result.retried == ["gsm8k-1"] and result.started == 3
    records = read_results(tmp_path / "results.jsonl")
    assert ids_once(tmp_path) == sorted(str(e.id) for e in EXAMPLES)
    assert not any("error" in r for r in records)
    assert [a for a, key in ray.solved if key == "gsm8k-1"] != [1]  # not on the lost replica


def test_a_replica_builds_several_trees_at_a_time(tmp_path):
    ray = FakeRay()
    result, _ = run(tmp_path, ray, replicas=1, trees=3)
    assert ray.most == 3 and result.started == 1  # three problems in flight on one replica
    assert ids_once(tmp_path) == sorted(str(e.id) for e in EXAMPLES)
    assert RayConfig(trees=3).actor_options()["max_concurrency"] == 3  # a threaded actor
    assert "max_concurrency" not in RayConfig().actor_options()


def test_a_replica_lost_with_trees_in_flight_is_replaced_once_and_each_runs_again(tmp_path):
    ray = FakeRay(die_once={"gsm8k-0"})
    result, _ = run(tmp_path, ray, replicas=1, trees=2)
    assert result.lost == 1 and result.started == 2  # one loss, one replacement
    assert result.retried == ["gsm8k-0", "gsm8k-1"]  # both of its problems, once each
    assert ids_once(tmp_path) == sorted(str(e.id) for e in EXAMPLES)
    assert {actor for actor, _ in ray.solved} == {1}  # nothing more went to the lost one


def test_a_problem_that_kills_every_replica_becomes_an_error_record(tmp_path):
    ray = FakeRay(deadly={"gsm8k-2"})
    result, _ = run(tmp_path, ray)
    assert result.lost == MAX_TRIES and result.retried == ["gsm8k-2"] * (MAX_TRIES - 1)
    assert ids_once(tmp_path) == sorted(str(e.id) for e in EXAMPLES)
    records = {r["id"]: r for r in read_results(tmp_path / "results.jsonl")}
    error = records["gsm8k-2"]["error"]
    assert f"lost at each of {MAX_TRIES} tries" in error and "crashed" in error
    assert records["gsm8k-2"]["correct"] is False and records["gsm8k-2"]["new_tokens"] == 0
    assert sum("error" in r for r in records.values()) == 1
    summary = summarize("gsm8k", "ar", list(records.values()))
    assert summary.errors == 1 and summary.examples == len(EXAMPLES)


def test_models_missing_on_a_node_is_one_line_and_nothing_is_recorded(tmp_path):
    line = "replica on node 10.0.0.0: the models are not prepared there: run `seedtree models ...`"
    with pytest.raises(SeedtreeError) as caught:
        run(tmp_path, FakeRay(load_error=line))
    assert str(caught.value) == line
    assert read_results(tmp_path / "results.jsonl") == []


def test_replicas_that_die_loading_are_replaced_a_bounded_number_of_times(tmp_path):
    ray = FakeRay(load_dies=True)
    with pytest.raises(SeedtreeError, match="every replica was lost while loading"):
        run(tmp_path, ray, replicas=2)
    assert len(ray.actors) == 2 + 2 * MAX_TRIES  # the first two, then MAX_TRIES per replica


def test_ctrl_c_keeps_what_is_finished_and_kills_the_replicas(tmp_path):
    def interrupt_after_two(record, actor):
        if len(seen) == 1:
            raise KeyboardInterrupt
        seen.append(record["id"])

    seen: list[str] = []
    ray = FakeRay()
    result, interrupted = run(tmp_path, ray, on_record=interrupt_after_two)
    assert interrupted and len(read_results(tmp_path / "results.jsonl")) == 2
    assert all(a.dead for a in ray.actors)


def test_without_ray_every_ray_option_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    needle = 'pip install "seedtree[ray]"'
    code, _, err = run_cli(capsys, "run", "--out", tmp_path, "--ray", "--replicas", 2)
    assert_one_line_error(code, err, "--ray needs Ray", needle)
    code, _, err = run_cli(capsys, "serve", "--ray", "local", "--replicas", 2)
    assert_one_line_error(code, err, "--ray needs Ray", needle)
    code, _, err = run_cli(capsys, "run", "--out", tmp_path, "--replicas", 2)
    assert_one_line_error(code, err, "--replicas", "only with --ray")


class NoInit:
    """A Ray that is not connected and must not be asked to (`ray.init` would retry)."""

    def is_initialized(self):
        return False

    def init(self, **kw):
        raise AssertionError("ray.init was called")


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_ray_address_where_nothing_listens_is_one_line_in_seconds(scheme):
    import socket
    import time

    from seedtree.distributed.cluster import connect

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SeedtreeError) as exc:
        connect(NoInit(), f"{scheme}127.0.0.1:{port}")
    message = str(exc.value)
    assert f"nothing answers at 127.0.0.1:{port}" in message and "ray start --head" in message
    assert "\n" not in message and time.monotonic() - start < 5
