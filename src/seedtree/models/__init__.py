"""Model pairs: embedded (PyPI part wheels -> cached safetensors), HF ids, local folders."""

from seedtree.models.assemble import is_prepared, model_dir, prepare_model, seedtree_home
from seedtree.models.loader import ModelPair, check_same_vocabulary, load_pair
from seedtree.models.registry import DEFAULT_PAIR, PAIRS, get_pair

__all__ = [
    "DEFAULT_PAIR",
    "PAIRS",
    "ModelPair",
    "check_same_vocabulary",
    "get_pair",
    "is_prepared",
    "load_pair",
    "model_dir",
    "prepare_model",
    "seedtree_home",
]
