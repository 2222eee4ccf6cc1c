import pytest
import torch

from seedtree.models.tiny import tiny_pair

torch.set_num_threads(1)
# the tiny-model suite runs on a GPU where there is one
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def pair():
    """Tiny float64 target p and draft q (q = p with weight noise), character tokenizer."""
    return tiny_pair(seed=0, device=DEVICE)


def save_pair_folders(root, seed: int, context: int):
    """Save a tiny pair as two local model folders, `root/draft` and `root/target`; the pair."""
    pair = tiny_pair(seed=seed, context=context)
    for name, model in (("draft", pair.draft), ("target", pair.target)):
        model.save_pretrained(root / name)
        pair.tokenizer.save_pretrained(root / name)
    return pair


def encode(pair, text: str) -> list[int]:
    return pair.tokenizer(text, add_special_tokens=False)["input_ids"]


def run_cli(capsys, *argv):
    """`seedtree ...` in this process: (exit status, stdout, stderr)."""
    from seedtree.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    """Exit status 2 and one line `error: ...` on stderr naming every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(n in lines[0] for n in needles), err
