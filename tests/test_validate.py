"""Library arguments at the boundary: wrong Python types and out-of-range numbers raise one-line
`SeedtreeError`s, the same ones the command line prints, and no work is done."""

import pytest

from seedtree import LLM, SamplingParams, SeedtreeError, SpecConfig
from seedtree.cli import main
from seedtree.search import SearchConfig
from seedtree.validate import MAX_TREE_NODES, SEED_MAX


@pytest.fixture(scope="module")
def llm(pair):
    return LLM(models=pair)


def one_line(exc_info, needle: str) -> None:
    message = str(exc_info.value)
    assert needle in message and "\n" not in message, message


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: SamplingParams(n=1.5), "n must be an integer, got float 1.5"),
        (lambda: SamplingParams(n=True), "n must be an integer, got bool"),
        (lambda: SamplingParams(max_new_tokens="8"), "max_new_tokens must be an integer"),
        (lambda: SamplingParams(temperature="0.7"), "temperature must be a number, got str"),
        (lambda: SamplingParams(temperature=float("inf")), "temperature must be a finite number"),
        (lambda: SamplingParams(top_p=float("nan")), "top_p must be a finite number"),
        (lambda: SamplingParams(seed=SEED_MAX + 1), f"seed must be <= {SEED_MAX}"),
        (lambda: SamplingParams(seed=-1), "seed must be >= 0"),
        (lambda: SamplingParams(seed=2.0), "seed must be an integer"),
        (lambda: SamplingParams(stop=[1]), "stop[0] must be a string, got int"),
        (lambda: SamplingParams(stop=None), "stop must be a string or a tuple of strings"),
        (lambda: SamplingParams(ignore_eos="yes"), "ignore_eos must be True or False"),
        (lambda: SamplingParams(n=10_000), "n must be <= 256"),
        (lambda: SamplingParams(logprobs=21), "logprobs must be <= 20"),
        (lambda: SamplingParams(logprobs=-1), "logprobs must be >= 0"),
        (lambda: SamplingParams(logprobs=True), "logprobs must be an integer, got bool"),
        (lambda: SpecConfig(gamma=2.5), "gamma must be an integer"),
        (lambda: SpecConfig(k_config="2,1"), "k_config must be a tuple of integers"),
        (lambda: SpecConfig(k_config=(2, 1.5)), "k_config[1] must be an integer"),
        (lambda: SpecConfig(k_config=(64, 64)), f"more than {MAX_TREE_NODES}"),
        (lambda: SpecConfig(replacement=1), "replacement must be True or False"),
        (lambda: SearchConfig(k=2.0), "k must be an integer"),
        (lambda: SearchConfig(k=10**9), "k must be <= 256"),
        (lambda: SearchConfig(depth=10**6), "depth must be <= 256"),
        (lambda: SearchConfig(threshold=float("nan")), "threshold must be a finite number"),
    ],
)
def test_bad_config_is_a_one_line_error(make, needle):
    with pytest.raises(SeedtreeError) as exc:
        make()
    one_line(exc, needle)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: LLM(draft=5, target="x"), "draft must be a string or None, got int"),
        (lambda: LLM(pair=["x"]), "pair must be a string or None, got list"),
        (lambda: LLM(dtype=16), "dtype must be a string or None, got int"),
        (lambda: LLM(device=5), "device must be a string"),
        (lambda: LLM(device="tpu"), "unknown device 'tpu': use cpu, cuda or cuda:N"),
        (lambda: LLM(cache_mb=-1), "cache_mb must be >= 0"),
        (lambda: LLM(cache_mb="big"), "cache_mb must be a number"),
    ],
)
def test_llm_checks_its_arguments_before_loading(make, needle):
    """Refused before any model loads (none would: no pair is prepared for these)."""
    with pytest.raises(SeedtreeError) as exc:
        make()
    one_line(exc, needle)


def test_step_engine_and_prefix_cache_check_their_arguments(pair):
    from seedtree.engine import PrefixCache
    from seedtree.engine.step import StepEngine

    engine = StepEngine(pair, "sd", SpecConfig(gamma=2), PrefixCache())
    with pytest.raises(SeedtreeError) as exc:
        engine.add_request("a", [5, 6, 7], None)
    one_line(exc, "params must be a SamplingParams, got NoneType")
    for bad, needle in ((-1, "capacity_mb must be >= 0"), ("1", "capacity_mb must be a number")):
        with pytest.raises(SeedtreeError) as exc:
            PrefixCache(capacity_mb=bad)
        one_line(exc, needle)


def test_the_seed_range_is_one_and_the_readme_says_it(llm):
    """0..SEED_MAX for the library, the CLI and the server (test_server.py), and the README's
    "Limits and errors" states that range."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert SEED_MAX == 2**63 - 1 and "seeds are 0..2^63-1" in readme
    assert "2^32" not in readme
    assert SamplingParams(seed=SEED_MAX).seed == SEED_MAX
    with pytest.raises(SeedtreeError, match=f"seed must be <= {SEED_MAX}"):
        SamplingParams(seed=SEED_MAX + 1)
    assert main(["generate", "--prompt", "x", "--seed", str(SEED_MAX + 1)]) == 2


def test_good_configs_are_normalised():
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(stop="x", seed=SEED_MAX).stop == ("x",)
    spec = SpecConfig(k_config=[2, 1])
    assert spec.k_config == (2, 1) and hash(spec)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda llm: llm.generate(123), "prompts must be a string or a list of strings, got int"),
        (lambda llm: llm.generate(["ok", None]), "prompts[1] must be a string, got null"),
        (lambda llm: llm.generate([]), "no prompts"),
        (lambda llm: llm.generate("x", {"max_new_tokens": 4}), "params must be a SamplingParams"),
        (lambda llm: llm.generate("x", spec=(2, 1)), "spec must be a SpecConfig, got tuple"),
        (lambda llm: llm.generate("x", chat="yes"), "chat must be True or False"),
        (lambda llm: llm.generate_many("abc"), "prompts must be a list of strings, got one str"),
        (lambda llm: llm.generate_many([]), "no prompts"),
        (lambda llm: llm.generate_many([b"bytes"]), "prompts[0] must be a string, got bytes"),
        (lambda llm: llm.generate(["a\ud800b"]), "prompts[0] is not valid Unicode"),
        (lambda llm: llm.generate("a\ud800b"), "prompt is not valid Unicode"),
    ],
)
def test_library_generate_checks_its_arguments(llm, call, needle):
    llm.last_run = None
    with pytest.raises(SeedtreeError) as exc:
        call(llm)
    one_line(exc, needle)
    assert llm.last_run is None  # nothing ran


def test_cli_and_library_give_the_same_message(capsys):
    huge = str(10**30)
    with pytest.raises(SeedtreeError) as exc:
        SamplingParams(seed=10**30)
    for command in (["generate", "--prompt", "x"], ["solve"]):
        assert main([*command, "--seed", huge]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {exc.value}\n"
