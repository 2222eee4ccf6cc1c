"""The embedded-model cache under a fake SEEDTREE_HOME: each corruption (empty marker, cut marker,
truncated weights, missing weights) gives one line naming `seedtree models prepare --force`,
`models list` shows it, and `models prepare --force` repairs it. The GGUF conversion is replaced by
saving a tiny model (`build_safetensors`); the real ~/.cache/seedtree is never touched."""

import json
from pathlib import Path

import pytest

import seedtree.models.assemble as assemble
from seedtree.cli import main
from seedtree.models.assemble import MARKER, cache_state, install_cache, model_dir
from seedtree.models.registry import PAIRS
from seedtree.models.tiny import tiny_pair

PAIR = PAIRS["qwen2.5-coder"]
TARGET = PAIR.target


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fake SEEDTREE_HOME whose 'prepare' saves a tiny pair; both models prepared."""
    monkeypatch.setenv("SEEDTREE_HOME", str(tmp_path / "home"))
    tiny = tiny_pair(seed=0, context=256)
    builds = []

    def build(model, work, progress=True):
        saved = work / "safetensors"
        lm = tiny.draft if model is PAIR.draft else tiny.target
        lm.save_pretrained(saved)
        tiny.tokenizer.save_pretrained(saved)
        builds.append(model.name)
        return saved

    monkeypatch.setattr(assemble, "build_safetensors", build)
    assert main(["models", "prepare"]) == 0
    assert builds == [PAIR.draft.name, PAIR.target.name]
    return builds


def generate(capsys):
    argv = ["generate", "--prompt", "ab", "--max-new-tokens", "3", "--draft-dtype", "float32"]
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, out, err


def cut_marker(folder):
    text = (folder / MARKER).read_text()
    (folder / MARKER).write_text(text[: len(text) // 2])


def truncate_weights(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def remove_weights(folder):
    (folder / "model.safetensors").unlink()


CORRUPTIONS = {
    "empty marker": (lambda f: (f / MARKER).write_text(""), "marker seedtree.json is empty"),
    "cut marker": (cut_marker, "marker seedtree.json is cut short"),
    "truncated weights": (truncate_weights, "model.safetensors has"),
    "missing weights": (remove_weights, "model.safetensors is missing"),
}


def test_a_prepared_cache_loads_and_its_marker_lists_every_file(home, capsys):
    code, out, err = generate(capsys)
    assert code == 0, err
    assert len(json.loads(out)["token_ids"]) == 3
    marker = json.loads((model_dir(TARGET) / MARKER).read_text())
    files = {p.name for p in model_dir(TARGET).iterdir()} - {MARKER}
    assert set(marker["files"]) == files and "model.safetensors" in files
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in marker["files"].values())
    assert main(["models", "prepare"]) == 0 and home == [PAIR.draft.name, PAIR.target.name]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_is_one_line_and_prepare_force_repairs_it(home, capsys, corruption):
    corrupt, reason = CORRUPTIONS[corruption]
    corrupt(model_dir(TARGET))
    capsys.readouterr()

    code, _, err = generate(capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: the cache of {TARGET.name} at {model_dir(TARGET)}")
    assert "is corrupt (" in lines[0] and reason in lines[0]
    assert lines[0].endswith("run `seedtree models prepare --force`")

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{TARGET.name} (Apache-2.0)" in listing
    assert "CORRUPT at" in listing and reason in listing
    assert f"prepared at {model_dir(PAIR.draft)}" in listing

    assert main(["models", "prepare"]) == 2  # without --force: the same one line
    assert "prepare --force" in capsys.readouterr().err

    assert main(["models", "prepare", "--force"]) == 0
    assert cache_state(TARGET).status == "ready"
    capsys.readouterr()
    code, out, err = generate(capsys)
    assert code == 0 and len(json.loads(out)["token_ids"]) == 3, err


def test_damaged_weights_of_the_right_size(home, capsys):
    weights = model_dir(TARGET) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[20:60] = b"x" * 40  # inside the header: same size, other bytes
    weights.write_bytes(bytes(data))
    assert cache_state(TARGET).status == "ready"  # loading checks sizes only (cheap)
    code, _, err = generate(capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot load model" in err and "prepare --force" in err
    assert main(["models", "prepare"]) == 2  # prepare checks every sha256
    assert "model.safetensors has another sha256" in capsys.readouterr().err


def test_an_interrupted_prepare_leaves_the_cache_as_it_was(home, monkeypatch):
    def crash(model, work, progress=True):
        (work / "safetensors").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(assemble, "build_safetensors", crash)
    with pytest.raises(KeyboardInterrupt):
        assemble.prepare_model(TARGET, progress=False, force=True)
    assert cache_state(TARGET).status == "ready"  # the old copy is untouched
    assert not (model_dir(TARGET).parent / f".{TARGET.name}.tmp").exists()


def test_older_markers_without_file_list_are_checked_by_the_safetensors_header(home):
    folder = model_dir(TARGET)
    marker = json.loads((folder / MARKER).read_text())
    del marker["files"]
    (folder / MARKER).write_text(json.dumps(marker))
    assert cache_state(TARGET).status == "ready"
    truncate_weights(folder)
    state = cache_state(TARGET)
    assert state.status == "corrupt" and "its header says" in state.reason


def test_install_swaps_the_folder_whole(home, tmp_path):
    saved = tmp_path / "new"
    tiny = tiny_pair(seed=1, context=128)
    tiny.target.save_pretrained(saved)
    tiny.tokenizer.save_pretrained(saved)
    assert install_cache(TARGET, saved) == model_dir(TARGET)
    assert not saved.exists() and cache_state(TARGET, checksums=True).status == "ready"
    leftovers = [p.name for p in model_dir(TARGET).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_prepare_force_works_whatever_the_folder_holds(home):
    folder = model_dir(TARGET)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.write_text("a file where the folder was")
    assert cache_state(TARGET).status == "missing"
    assert main(["models", "prepare", "--force"]) == 0
    assert cache_state(TARGET).status == "ready"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_seedtree_home_is_the_default_location(monkeypatch, tmp_path, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEEDTREE_HOME", value)
    assert assemble.seedtree_home() == Path.home() / ".cache" / "seedtree"
    assert assemble.model_dir(TARGET).is_absolute()
