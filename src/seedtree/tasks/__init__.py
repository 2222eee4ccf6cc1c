"""Tasks: data, prompts, answer parsing and scoring for GSM8K, Creative Writing, Blocksworld and
Game of 24."""

from importlib.resources import files
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A file under the package's bundled data folder (copied from the benchmark sources)."""
    return Path(str(files("seedtree").joinpath("data", *parts)))


TASK_NAMES = ("gsm8k", "creative_writing", "blocksworld", "game24")


def get_task(name: str):
    """A task by name: "gsm8k", "creative_writing", "blocksworld" or "game24"."""
    from seedtree.errors import SeedtreeError

    if name == "gsm8k":
        from seedtree.tasks.gsm8k import GSM8K

        return GSM8K()
    if name == "creative_writing":
        from seedtree.tasks.creative_writing import CreativeWriting

        return CreativeWriting()
    if name == "blocksworld":
        from seedtree.tasks.blocksworld import Blocksworld

        return Blocksworld()
    if name == "game24":
        from seedtree.tasks.game24 import Game24

        return Game24()
    raise SeedtreeError(f"unknown task '{name}': choose one of {', '.join(TASK_NAMES)}")
