"""Uploaded files read as data only: size-checked UTF-8 text, YAML mappings, probe records."""
from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.inputs import load_yaml
from advisor.records import read_records

MAX_UPLOAD_MB = 20


def upload_text(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> str:
    """The upload as text; AdvisorError if it is too large, empty or not UTF-8."""
    if len(data) > max_mb * 1e6:
        raise AdvisorError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_mb:g} MB limit")
    if not data.strip():
        raise AdvisorError(f"{name}: the file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdvisorError(
            f"{name}: not UTF-8 text (byte {exc.start}); expected YAML or JSON lines"
        ) from None


def parse_yaml_mapping(name: str, data: bytes) -> dict:
    """A YAML upload, safely loaded (advisor.inputs bounds its nesting and aliases); it must be
    a mapping."""
    doc = load_yaml(upload_text(name, data), name)
    if not isinstance(doc, dict):
        raise AdvisorError(
            f"{name}: expected a YAML mapping at the top, found {type(doc).__name__}")
    return doc


def safe_name(name: str, suffix: str) -> str:
    """An upload's name as a plain file name (no folders, no leading dot) ending in `suffix`."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "upload"
    return stem if stem.endswith(suffix) else stem + suffix


@contextmanager
def as_temp_file(name: str, text: str, suffix: str):
    """The text written under a sanitized copy of `name` in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="advisor-upload-") as tmp:
        path = Path(tmp) / safe_name(name, suffix)
        path.write_text(text, encoding="utf-8")
        yield path


def parse_records_upload(name: str, data: bytes) -> tuple[list[dict], list[str]]:
    """Valid records of an uploaded JSON-lines probe file and its problems, each problem as
    "<upload name>:<line>: <what>"; `_source` of each record names the upload and line."""
    text = upload_text(name, data)
    with as_temp_file(name, text, ".jsonl") as path:
        records, problems = read_records(path)
    problems = [p.replace(str(path), name, 1) for p in problems]
    for record in records:
        record["_source"] = f"{name}:{record['_source'].rsplit(':', 1)[1]}"
    return records, problems


def valid_lines(text: str, records: list[dict]) -> str:
    """The upload with its invalid lines blanked: line numbers stay those of the user's file."""
    keep = {int(r["_source"].rsplit(":", 1)[1]) for r in records}
    lines = text.splitlines()
    return "\n".join(line if n in keep else "" for n, line in enumerate(lines, start=1)) + "\n"
