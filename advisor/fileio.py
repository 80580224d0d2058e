"""Atomic file writes: nothing already written is lost or half-written."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from advisor.errors import AdvisorError


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path, what: str) -> Path:
    """AdvisorError naming `what` (e.g. "--out") and the path unless a file can be written at
    `path`: not a folder, in a folder that exists or can be made, with write permission.
    Checked before long work, so that its result is not lost at the end."""
    path = Path(path)
    where = f"{what} {path}"
    if path.is_dir():
        raise AdvisorError(f"{where}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise AdvisorError(f"{where}: the file is not writable")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise AdvisorError(f"{where}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AdvisorError(f"{where}: the folder {folder} is not writable")
    return path


def write_user_file(path: str | Path, data: str | bytes, what: str) -> None:
    """`write_atomic` for a file the user named (`what`: the flag or the kind of file): a
    failure is an AdvisorError naming it (nothing written, the old file kept)."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise AdvisorError(f"{what} {path}: not written "
                           f"({exc.strerror or type(exc).__name__})") from None


def append_line_atomic(path: str | Path, line: str) -> None:
    """Append one line so that a crash leaves either the old file or the old file plus the line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    write_atomic(path, old + line.rstrip("\n").encode() + b"\n")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
