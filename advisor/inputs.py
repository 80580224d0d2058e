"""Reading the files a user names, safely: regular files only, within a size bound, and YAML
with bounded nesting and alias expansion.

Every user-named request, plan, catalog, measurement file and dashboard upload is read here, so
that `/dev/zero`, a named pipe, a huge file or a 700-byte YAML "billion laughs" fails at once with
an AdvisorError naming the file, instead of hanging or filling memory.
"""
from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

import yaml

from advisor.errors import AdvisorError

MB = 1_000_000
MAX_YAML_BYTES = 10 * MB  # a request, plan or catalog; the shipped ones are well under 100 kB
MAX_RECORDS_BYTES = 500 * MB  # one measurement file; the shipped ones are about 200 kB
# Bounds on a YAML document with its aliases expanded (an alias repeats the node it names, so a
# few hundred bytes can stand for billions of nodes). The shipped catalog has about 3,000 nodes
# and 5 levels; a plan about 2,000 nodes and 7 levels.
MAX_YAML_NODES = 200_000
MAX_YAML_DEPTH = 40
# YAML 1.1 (PyYAML) reads a number with an exponent but no "." or no exponent sign (1e30,
# 1.5e9) as a string; YAML 1.2 and people read it as a number, and so does this loader.
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def is_number(value) -> bool:
    """A finite int or float, not a bool (True is an int to Python, not a count to a user);
    ints beyond float range (10**400) are not numbers the advisor can compute with."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def read_text(path: str | Path, what: str, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The text of the regular file at `path` (a `what`, e.g. "request"), UTF-8, at most
    `max_bytes` long; AdvisorError naming the file otherwise. Devices, pipes, sockets and
    folders are refused before anything is read from them."""
    with _open(path, what, max_bytes) as f:  # its size is within max_bytes
        size = os.fstat(f.fileno()).st_size
        data = f.read(size + 1)  # no more: a read of max_bytes would allocate max_bytes
    if len(data) > size:
        raise AdvisorError(f"{path}: the {what} file grew while it was read; try again")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdvisorError(f"{path}: the {what} file is not UTF-8 text (byte {exc.start})") \
            from None


def check_file(path: str | Path, what: str, max_bytes: int) -> None:
    """AdvisorError unless `path` is a regular file of at most `max_bytes` (read_text's checks,
    without reading it)."""
    with _open(path, what, max_bytes):
        pass


def _open(path: str | Path, what: str, max_bytes: int):
    """The regular file at `path`, open for binary reading, at most `max_bytes` long. The
    checks are made on the open descriptor (so the file cannot be swapped in between), which is
    opened without blocking (a named pipe with no writer would wait forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise AdvisorError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise AdvisorError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        if info.st_size > max_bytes and stat.S_ISREG(info.st_mode):
            raise _too_large(path, what, info.st_size, max_bytes)
        found = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise AdvisorError(f"{path}: expected a regular {what} file, found {found}")
    return os.fdopen(fd, "rb")


def _too_large(path, what: str, size: int, max_bytes: int) -> AdvisorError:
    return AdvisorError(f"{path}: the {what} file is {size / MB:,.1f} MB, over the "
                        f"{max_bytes / MB:g} MB limit")


def load_yaml(text: str, source: str):
    """`text` parsed like yaml.safe_load (plus YAML 1.2 exponent numbers), refusing documents
    nested deeper than MAX_YAML_DEPTH or larger than MAX_YAML_NODES nodes once aliases are
    expanded; AdvisorError naming `source` and, for syntax errors, the line.

    libyaml (PyYAML's C loader) reads a document that passes every check, about 8x faster
    than the Python loader (0.02 against 0.12 s for the shipped catalog); anything it refuses
    or that comes near the bounds is read again by the Python loader, whose errors are the
    ones reported."""
    if _CLoader is not None:
        try:
            if _nesting(text) < MAX_YAML_DEPTH - 1:
                return _load(_CLoader(text), source)
        except (AdvisorError, yaml.YAMLError, ValueError, TypeError, AttributeError,
                LookupError, ArithmeticError):
            pass
    return _load(_Loader(text), source)


def _nesting(text: str) -> int:
    """The deepest nesting of collections in a YAML text, read from libyaml's events (its
    parser keeps an explicit stack; the C composer recurses, so it gets only documents well
    within MAX_YAML_DEPTH)."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=_CLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


def _load(loader, source: str):
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise AdvisorError(f"{source}: {_yaml_error(exc)}") from None
    except (ValueError, TypeError, AttributeError, LookupError, ArithmeticError) as exc:
        # a tagged or typed scalar PyYAML cannot build: !!int 'x', !!int '', 2026-13-45,
        # 5,000 digits
        raise AdvisorError(f"{source}: invalid YAML value ({str(exc)[:200]})") from None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in a few words: where, and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context else "")


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops composing past MAX_YAML_DEPTH (Python's recursion limit would
    otherwise end a deeply nested document with a RecursionError)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT,
                              list("-+0123456789"))

if hasattr(yaml, "CSafeLoader"):  # PyYAML built with libyaml (its wheels are)
    class _CLoader(yaml.CSafeLoader):
        """libyaml's safe loader with _Loader's scalar types."""

    _CLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT,
                                   list("-+0123456789"))
else:
    _CLoader = None


def _check_expanded(root: yaml.Node, source: str) -> None:
    """AdvisorError if the node graph, aliases expanded, is cyclic, deeper than MAX_YAML_DEPTH
    or larger than MAX_YAML_NODES. Each distinct node is visited once (sizes are memoized), so
    this costs the size of the file, not of the expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()  # entered, not finished: the current path from the root
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            entered.discard(key)
            if size[key] > MAX_YAML_NODES or depth[key] > MAX_YAML_DEPTH:
                raise AdvisorError(
                    f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values or "
                    f"{MAX_YAML_DEPTH} levels (aliases repeat what they name); write the "
                    "values out instead")
            continue
        if key in size:
            continue
        if key in entered:
            raise AdvisorError(f"{source}: the YAML has an alias inside the value it names "
                               "(a recursive structure); write the values out instead")
        entered.add(key)
        stack.append((node, True))
        stack += [(k, False) for k in _children(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []
