"""Tasks: data, prompts, answer parsing and scoring for GSM8K, Creative Writing and Blocksworld."""

from importlib.resources import files
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A file under the package's bundled data folder (copied from the benchmark sources)."""
    return Path(str(files("seedtree").joinpath("data", *parts)))
