"""Objects of listed classes stored as numpy arrays plus JSON: a form that loading cannot turn
into running code.

`dumps(obj, classes)` gives the bytes of an uncompressed `.npz` archive: every larger numpy
array of the object tree as its own member, and the tree itself as UTF-8 JSON (member `tree`).
Python values JSON has no type for are tagged objects of one `$` key: `{"$tuple": [...]}`,
`{"$set": [...]}`, `{"$map": [[key, value], ...]}` (a dict whose keys are not all plain
strings), `{"$array": "a3"}` (a member), `{"$small": [dtype, shape, values]}` (an array of at
most INLINE_SIZE numbers, kept in the JSON: exact, and faster to read than a member), and
`{"$object": "module.Class", "state": {...}}` for an instance
of one of `classes`. `loads(data, classes)` reads the archive with `allow_pickle=False`, parses
the JSON, and rebuilds instances of the listed classes only, by setting the attributes they
were saved with (no method of the class runs); anything else is a `SnapshotError`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np

TREE = "tree"
MAX_DEPTH = 200  # nesting a saved object may have
MAX_MEMBER_BYTES = 1 << 30  # an archive member declaring more is refused before it is read
INLINE_SIZE = 256  # arrays of at most this many items are stored in the JSON, not as members
# The array types a snapshot stores (numbers only: an object array would hold pickles)
DTYPES = {np.dtype(t).name: np.dtype(t) for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64")}


class SnapshotError(ValueError):
    """A snapshot that cannot be written or read back as it was saved."""


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def dumps(obj, classes) -> bytes:
    """The snapshot of `obj`; SnapshotError for a value of a type it does not store."""
    names = {class_name(c): c for c in classes}
    arrays: dict[str, np.ndarray] = {}

    def encode(value, depth: int):
        if depth > MAX_DEPTH:
            raise SnapshotError(f"nested deeper than {MAX_DEPTH} levels (a reference cycle?)")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return value.item()
        if isinstance(value, np.ndarray):
            if value.dtype.name not in DTYPES:
                raise SnapshotError(f"an array of dtype {value.dtype} (numbers only)")
            if value.size <= INLINE_SIZE:  # small: in the JSON, exact (floats as repr)
                return {"$small": [value.dtype.name, list(value.shape), value.ravel().tolist()]}
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"$array": key}
        if isinstance(value, list):
            return [encode(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return {"$tuple": [encode(v, depth + 1) for v in value]}
        if isinstance(value, (set, frozenset)):
            return {"$set": [encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: encode(v, depth + 1) for k, v in value.items()}
            return {"$map": [[encode(k, depth + 1), encode(v, depth + 1)]
                             for k, v in value.items()]}
        name = class_name(type(value))
        if names.get(name) is not type(value):
            raise SnapshotError(f"a {name} (not among the classes a snapshot stores)")
        return {"$object": name, "state": {k: encode(v, depth + 1)
                                           for k, v in _state(value).items()}}

    tree = json.dumps(encode(obj, 0), separators=(",", ":"))
    buffer = io.BytesIO()
    np.savez(buffer, **{TREE: np.frombuffer(tree.encode(), dtype=np.uint8)}, **arrays)
    return buffer.getvalue()


def loads(data: bytes, classes):
    """The object `dumps` saved; SnapshotError for anything that is not such a snapshot."""
    names = {class_name(c): c for c in classes}
    fields = {c: frozenset(f.name for f in dataclasses.fields(c)) for c in classes
              if dataclasses.is_dataclass(c)}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            sizes = [info.file_size for info in archive.infolist()]
        if any(size > MAX_MEMBER_BYTES for size in sizes):
            raise SnapshotError("an archive member larger than the bound")
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except SnapshotError:
        raise
    except Exception as exc:  # not a zip, not .npy members, pickled members (refused)
        raise SnapshotError(f"not a snapshot archive ({type(exc).__name__}: {exc})") from None
    tree = arrays.pop(TREE, None)
    if tree is None or tree.dtype != np.uint8 or tree.ndim != 1:
        raise SnapshotError(f"no '{TREE}' member of bytes")

    def hook(d: dict):
        if len(d) > 2:  # most dicts: plain (a tagged object has one key, an instance two)
            return d
        if "$object" in d:
            cls = names.get(d["$object"]) if isinstance(d["$object"], str) else None
            if cls is None or set(d) != {"$object", "state"} or not isinstance(d["state"], dict):
                raise SnapshotError(f"an object of an unlisted class {str(d['$object'])[:80]!r}")
            return _rebuild(cls, d["state"], fields.get(cls))
        if len(d) != 1 or not next(iter(d)).startswith("$"):
            return d
        (tag, value), = d.items()
        if tag == "$array" and isinstance(value, str) and value in arrays:
            return arrays[value]
        if tag == "$small":
            return _small_array(value)
        if tag in ("$tuple", "$set", "$map") and isinstance(value, list):
            if tag == "$tuple":
                return tuple(value)
            if tag == "$set":
                return set(value)
            if all(isinstance(p, list) and len(p) == 2 for p in value):
                return {k: v for k, v in value}
        raise SnapshotError(f"a bad tagged value {tag[:40]!r}")

    try:
        return json.loads(tree.tobytes().decode(), object_hook=hook)
    except SnapshotError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:  # bad JSON or unhashable keys
        raise SnapshotError(f"a bad object tree ({type(exc).__name__})") from None


def _small_array(value) -> np.ndarray:
    """An array stored inline as [dtype name, shape, flat values]."""
    if not (isinstance(value, list) and len(value) == 3 and value[0] in DTYPES
            and isinstance(value[1], list) and all(isinstance(n, int) and 0 <= n <= INLINE_SIZE
                                                   for n in value[1])
            and isinstance(value[2], list) and len(value[2]) <= INLINE_SIZE
            and all(isinstance(x, (int, float, bool)) for x in value[2])):
        raise SnapshotError("a bad inline array")
    return np.array(value[2], dtype=DTYPES[value[0]]).reshape(value[1])


def _state(obj) -> dict:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(vars(obj))


def _rebuild(cls: type, state: dict, fields: frozenset | None):
    """An instance of `cls` with `state` as its attributes (a dataclass's `fields` exactly); no
    method of `cls` runs."""
    if fields is not None:
        if state.keys() != fields:
            raise SnapshotError(f"{class_name(cls)} saved with other fields than it has")
    elif not all(isinstance(k, str) and k.isidentifier() and not k.startswith("__")
                 for k in state):
        raise SnapshotError(f"{class_name(cls)} saved with an attribute name that is not one")
    obj = object.__new__(cls)
    for key, value in state.items():
        object.__setattr__(obj, key, value)
    return obj
