import pytest
import torch

from seedtree.decoding.adaptive import CostModel
from seedtree.engine import costs
from seedtree.models.tiny import tiny_pair

torch.set_num_threads(1)
# the tiny-model suite runs on a GPU where there is one
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# The tiny pair's draft is as large as its target, so the costs an engine measures on it make
# speculation never pay and the batch policy would draft nothing. For tiny pairs the engines'
# tests stand in the shape of the real pair's costs (an int8 0.5B draft step is ~0.2 of a bf16
# 1.5B target forward on a CPU; rows and context are cheap): `plan_depths` drafts for a few
# branches and fades for many. Real pairs are measured (`measured_costs` measures a tiny one).
REAL_SHAPE = CostModel(a=0.3, b=0.002, e=0.000005, d0=0.05, d1=0.002)
MEASURE = costs.measure


def _stand_in(pair):
    tiny = sum(p.numel() for p in pair.target.parameters()) < 10**7
    return REAL_SHAPE if tiny else MEASURE(pair)


costs.measure = _stand_in  # the whole session, module-scoped fixtures too


@pytest.fixture
def measured_costs(monkeypatch):
    monkeypatch.setattr(costs, "measure", MEASURE)


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
