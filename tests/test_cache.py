"""The model cache: a snapshot that loading cannot turn into running code, a bad file treated as a
miss, and loaded models that predict exactly as freshly fitted ones."""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor import CATALOG_PATH, snapshot
from advisor.cache import CACHED_CLASSES, cache_key, dumps, load_models
from advisor.contract import PRECISIONS, Config
from tests.synthetic import synthetic_records

GRID = [dict(height=h, width=w, batch=b) for h, w in ((512, 512), (1024, 1024), (1024, 768))
        for b in (1, 4)]
MARKER = "ran.txt"


class Payload:
    """Unpickling this writes a file: the proof that a cache load ran code."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return _write_marker, (self.target,)


def _write_marker(target):
    with open(target, "w") as f:
        f.write("owned")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    records = synthetic_records(grid=GRID, noise=0.01)
    for gpu in sorted({r["gpu"]["catalog_id"] for r in records}):
        lines = [json.dumps(r) for r in records if r["gpu"]["catalog_id"] == gpu]
        (folder / f"{gpu}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def fresh(data, tmp_path_factory):
    return load_models(data, CATALOG_PATH, tmp_path_factory.mktemp("cache"), refit=True)


def _cache_file(data, folder):
    return folder / f"models-{cache_key(data, CATALOG_PATH)[:32]}.npz"


def _no_refit(monkeypatch):
    monkeypatch.setattr("advisor.cache.fit_from_files",
                        lambda *a, **k: pytest.fail("refitted although the cache was good"))


# ------------------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class Point:
    x: float
    tags: tuple


class Box:
    def __init__(self, items):
        self.items = items


def test_a_snapshot_keeps_every_type_it_holds():
    value = {"plain": [1, 2.5, None, True, "s"], ("tuple", 1): {1},
             "$dollar": (1, (2, "x")), "array": np.arange(6.0).reshape(2, 3),
             "ints": np.array([1, -2], dtype=np.int32), "scalar": np.float64(0.1),
             "nan": float("nan"), "objects": [Point(1.5, ("a", 2)), Box({"k": Point(0.0, ())})],
             "set": {("a", 1), ("b", 2)}}
    back = snapshot.loads(snapshot.dumps(value, (Point, Box)), (Point, Box))
    assert back["plain"] == value["plain"] and back[("tuple", 1)] == {1}
    assert back["$dollar"] == (1, (2, "x")) and back["set"] == value["set"]
    assert back["array"].shape == (2, 3) and np.array_equal(back["array"], value["array"])
    assert back["ints"].dtype == np.int32 and back["scalar"] == 0.1
    assert np.isnan(back["nan"])
    assert back["objects"][0] == Point(1.5, ("a", 2))
    assert back["objects"][1].items == {"k": Point(0.0, ())}


def test_a_snapshot_refuses_what_it_cannot_store():
    with pytest.raises(snapshot.SnapshotError, match="not among the classes"):
        snapshot.dumps({"p": Point(1.0, ())}, ())
    with pytest.raises(snapshot.SnapshotError, match="dtype object"):
        snapshot.dumps(np.array([Point(1.0, ())], dtype=object), (Point,))


def _archive(tree, **arrays) -> bytes:
    """A snapshot-shaped archive of `tree` (JSON text when bytes)."""
    text = tree if isinstance(tree, bytes) else json.dumps(tree).encode()
    buffer = io.BytesIO()
    np.savez(buffer, tree=np.frombuffer(text, dtype=np.uint8), **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("data, why", [
    (b"", "not a snapshot archive"),
    (pickle.dumps({"a": 1}), "not a snapshot archive"),
    (_archive({"$object": "os.system", "state": {}}), "unlisted class"),
    (_archive({"$object": "collections.OrderedDict", "state": {}}), "unlisted class"),
    (_archive({"$array": "a0"}), "bad tagged value"),
    (_archive({"$map": [[[1], 2]]}), "bad object tree"),
    (_archive({"$eval": "1"}), "bad tagged value"),
    (_archive([[[[[[]]]]]] * 2, a0=np.array([None, 1], dtype=object)), "not a snapshot archive"),
    (_archive(b"[" * 100_000 + b"]" * 100_000), "bad object tree"),
    (_archive({"$small": ["object", [1], [1]]}), "bad inline array"),
    (_archive({"$small": ["float64", [2], [1.0, [2]]]}), "bad inline array"),
    (_archive({"$small": ["float64", [3], [1.0]]}), "bad object tree"),
], ids=["empty", "pickle", "os.system", "unlisted", "no array", "list key", "unknown tag",
        "object array", "deep", "inline object", "inline nested", "inline shape"])
def test_a_bad_snapshot_is_an_error_never_code(data, why):
    with pytest.raises(snapshot.SnapshotError, match=why):
        snapshot.loads(data, (Point, Box))


def test_a_snapshot_object_gets_only_the_fields_of_its_class():
    name = snapshot.class_name(Point)
    for state in ({"x": 1.0}, {"x": 1.0, "tags": [], "extra": 1}):
        with pytest.raises(snapshot.SnapshotError, match="other fields"):
            snapshot.loads(_archive({"$object": name, "state": state}), (Point,))
    with pytest.raises(snapshot.SnapshotError, match="attribute name"):
        snapshot.loads(_archive({"$object": snapshot.class_name(Box),
                                 "state": {"__class__": "x"}}), (Box,))


# ------------------------------------------------------------------------------ the cache


def test_loaded_models_predict_exactly_as_freshly_fitted_ones(data, fresh, monkeypatch):
    folder = Path(fresh.cache_path).parent  # where the fit wrote its cache file
    assert _cache_file(data, folder).is_file()
    _no_refit(monkeypatch)
    loaded = load_models(data, CATALOG_PATH, folder)
    queries = [(gpu, Config(h, w, batch=b, precision=p, compile=c))
               for gpu in sorted(fresh.specs) for h, w, b in ((512, 512, 1), (1024, 768, 4),
                                                              (2048, 2048, 2))
               for p in PRECISIONS for c in (False, True)]
    queries = [q for q in queries if fresh.refusal(*q) is None]
    assert len(queries) > 100
    assert [p.as_dict() for p in loaded.predict_many(queries)] == \
        [p.as_dict() for p in fresh.predict_many(queries)]
    assert loaded.summary() | {"cache_path": None} == fresh.summary() | {"cache_path": None}
    assert {type(x) for x in (loaded.latency, loaded.memory)} == \
        {type(x) for x in (fresh.latency, fresh.memory)}


def test_a_crafted_pickle_under_the_cache_name_runs_nothing(data, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    target = _cache_file(data, folder)
    crafted = pickle.dumps(Payload(tmp_path / MARKER))
    legacy = target.with_suffix(".pkl")  # the name the cache once had
    for path in (target, legacy):
        path.write_bytes(crafted)
    models = load_models(data, CATALOG_PATH, folder)
    assert not (tmp_path / MARKER).exists()
    assert models.cache_path == str(target)
    assert target.read_bytes() != crafted  # refitted and replaced by a snapshot
    assert snapshot.loads(target.read_bytes(), CACHED_CLASSES).model_version == \
        models.model_version


def test_a_crafted_snapshot_is_a_miss(data, fresh, tmp_path, monkeypatch):
    """Arrays that hold pickles, a class outside the list, a valid snapshot of another fit or of
    another object, a truncated file: each is refitted, never trusted."""
    refits = []
    monkeypatch.setattr("advisor.cache.fit_from_files",
                        lambda *a, **k: refits.append(1) or replace(fresh))
    folder = tmp_path / "cache"
    folder.mkdir()
    target = _cache_file(data, folder)
    good = dumps(fresh)
    buffer = io.BytesIO()
    np.savez(buffer, tree=np.frombuffer(b'{"$array": "a0"}', dtype=np.uint8),
             a0=np.array([Payload(tmp_path / MARKER)], dtype=object))
    other = replace(fresh, model_version="fit:000000000000")
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        tree = archive.read("tree.npy")
    crafted = [buffer.getvalue(), good[: len(good) // 2], dumps(other),
               snapshot.dumps([1, 2], CACHED_CLASSES),
               _archive({"$object": "builtins.eval", "state": {}}), tree]
    for content in crafted:
        target.write_bytes(content)
        models = load_models(data, CATALOG_PATH, folder)
        assert models.model_version == fresh.model_version
        assert target.read_bytes() != content
    assert len(refits) == len(crafted) and not (tmp_path / MARKER).exists()


def test_a_cache_folder_entry_that_is_not_a_file_is_a_miss(data, fresh, tmp_path):
    folder = tmp_path / "cache"
    target = _cache_file(data, folder)
    target.mkdir(parents=True)  # a folder under the file's name: refit, cache not written
    models = load_models(data, CATALOG_PATH, folder)
    assert models.model_version == fresh.model_version and models.cache_path is None
    assert any("model cache not written" in p for p in models.problems)


# ------------------------------------------------------------------------------ any value

KEYS = st.one_of(st.text(max_size=6), st.integers(), st.tuples(st.text(max_size=3),
                                                               st.integers()))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=False), st.text(max_size=8),
                   st.builds(np.array, st.lists(st.floats(allow_nan=False), max_size=4)))
TREES = st.recursive(LEAVES, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.tuples(kids, kids),
    st.dictionaries(KEYS, kids, max_size=3),
    st.builds(Point, st.floats(allow_nan=False), st.tuples(kids))), max_leaves=20)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Point):
        return isinstance(b, Point) and a.x == b.x and _same(a.tags, b.tags)
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=2000, derandomize=True, database=None)
@given(TREES)
def test_any_tree_of_stored_types_comes_back_as_it_was(value):
    assert _same(snapshot.loads(snapshot.dumps(value, (Point,)), (Point,)), value)
