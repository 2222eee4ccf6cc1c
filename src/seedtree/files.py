"""Files at the boundary: UTF-8 input lines, writable output paths, atomic writes, a folder lock.

Every failure is a one-line `SeedtreeError` that names the file and the fix. This module knows
nothing about models, tasks or what the files hold.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seedtree.errors import SeedtreeError

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None

LOCK_FILE = ".lock"


def read_bytes(path: Path, what: str) -> bytes:
    """The whole file, or a one-line error saying why it cannot be read."""
    check_readable(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SeedtreeError(f"cannot read {what} {path} ({exc.strerror}): check it") from None


def read_lines(path: Path, what: str) -> Iterator[tuple[int, str | None]]:
    """`utf8_lines` of the file, read a line at a time (memory bounded by the longest line);
    the same one-line errors as `read_bytes`."""
    check_readable(path, what)
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    yield number, raw.rstrip(b"\r\n").decode("utf-8")
                except UnicodeDecodeError:
                    yield number, None
    except OSError as exc:
        raise SeedtreeError(f"cannot read {what} {path} ({exc.strerror}): check it") from None


def check_readable(path: Path, what: str) -> None:
    """`path` is an existing file, or a one-line error saying why it cannot be read."""
    if not path.exists():
        raise SeedtreeError(f"{what} {path} does not exist: pass an existing file")
    if not path.is_file():
        raise SeedtreeError(f"{what} {path} is not a file: pass a file")


def utf8_lines(data: bytes) -> Iterator[tuple[int, str | None]]:
    """(line number from 1, the line's text, or None where it is not valid UTF-8)."""
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: Path, option: str) -> None:
    """`path` is a folder we may write into, or one we can create. Nothing is created."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise SeedtreeError(f"{option} {path} is a file, not a folder: pass a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise SeedtreeError(
            f"{option} {path} cannot be created: {base} is a file, not a folder; "
            f"choose another {option}"
        )
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise SeedtreeError(
            f"{option} {path} is not writable ({exc.strerror} in {base}): "
            f"choose a writable {option}"
        ) from None


def check_output_file(path: Path, option: str) -> None:
    """`path` can be written as a file (its folder is checked as by `check_output_dir`)."""
    path = path.expanduser()
    if path.is_dir():
        raise SeedtreeError(f"{option} {path} is a folder: pass a file path")
    check_output_dir(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise SeedtreeError(f"{option} {path} is read-only: choose another {option}")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`:
    readers see the old file or the whole new one, never a part."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(fd: int, line: str) -> None:
    """Append one line (a newline is added) with one write on an O_APPEND descriptor, and flush
    it to disk: a record is written whole or, if the process dies mid-write, is a partial last
    line that the reader detects."""
    data = (line + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data) :]
    os.fsync(fd)


@contextlib.contextmanager
def folder_lock(folder: Path, option: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if missing) while inside; a second holder is
    refused with the first holder's pid. The lock goes with the process, even on SIGKILL."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SeedtreeError(
            f"cannot use {option} {folder} ({exc.strerror}): choose a writable {option}"
        ) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise SeedtreeError(
                    f"{option} {folder} is in use by another seedtree run (pid {holder}): "
                    f"wait for it to end, or choose another {option}"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
