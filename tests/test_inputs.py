"""Reading user files: regular files only, a size bound, YAML with bounded aliases and nesting."""
import os
import time
from pathlib import Path

import pytest

from advisor import inputs
from advisor.errors import AdvisorError, describe
from advisor.inputs import MAX_YAML_DEPTH, load_yaml, read_text
from advisor.request import Request

BOMB = "\n".join(
    ["demand: {images_per_s: 1}", "slo: {p95_s: 10}", "candidates:", "  gpus:",
     "    - &l0 [h100, h100, h100, h100, h100, h100, h100, h100, h100]"]
    + [f"    - &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"


def test_a_yaml_alias_bomb_is_refused_fast(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 700  # 9^9 values once expanded
    start = time.perf_counter()
    with pytest.raises(AdvisorError, match="bomb.yaml: the YAML expands to more than"):
        Request.from_yaml(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text, message", [
    ("a: &a [1, *a]\n", "an alias inside the value it names"),
    ("a: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5) + "\n",
     f"nested deeper than {MAX_YAML_DEPTH} levels"),
    ("a: " + "[" * 5000 + "\n", "nested deeper than"),  # no RecursionError
    ("a: 2026-13-45\n", "invalid YAML value (month must be in 1..12)"),
    ("a: !!int x\n", "invalid YAML value"),
    ("!!int ", "invalid YAML value"),
    ("a: " + "1" * 5000 + "\n", "invalid YAML value"),
    ("a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ("a: [1\n", "line 2, column 1: invalid YAML"),
])
def test_bad_yaml_is_an_advisor_error(text, message):
    with pytest.raises(AdvisorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_yaml(text, "f.yaml")


def test_chained_aliases_are_measured_without_recursion():
    text = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 3000))
    with pytest.raises(AdvisorError, match="expands to more than"):
        load_yaml(text, "f.yaml")


def test_yaml_1_2_exponent_numbers_are_numbers():
    assert load_yaml("a: 1e30\nb: 1.5e9\nc: -2E-3\nd: 1e\ne: 12\n", "f") == {
        "a": 1e30, "b": 1.5e9, "c": -2e-3, "d": "1e", "e": 12}


@pytest.mark.skipif(inputs._CLoader is None, reason="PyYAML built without libyaml")
def test_libyaml_reads_what_the_python_loader_reads(monkeypatch):
    """The shipped YAML files, exponent numbers and aliases read by libyaml alone (the Python
    loader made unusable) give what the Python loader gives."""
    root = Path(__file__).resolve().parent.parent
    texts = [p.read_text() for p in sorted([root / "gpu_catalog.yaml",
                                            *root.glob("examples/*.yaml"),
                                            *root.glob("data/grids/*.yaml")])]
    texts += ["a: 1e30\nb: 1.5e9\nc: -2E-3\nd: 1e\ne: 12\nf: 2026-12-07\n",
              "x: &x {k: [1, 2.5, null, true]}\ny: [*x, *x]\n"]
    expected = [inputs._load(inputs._Loader(t), "f.yaml") for t in texts]
    monkeypatch.setattr(inputs, "_Loader", None)
    assert [load_yaml(t, "f.yaml") for t in texts] == expected


def test_a_quoted_number_says_so():
    assert describe("1e30").endswith("(a number in quotes is text: remove the quotes)")
    assert describe("abc") == "string 'abc'"


def test_messages_quote_a_few_dozen_characters_of_what_they_found():
    assert len(describe("x" * 10**7)) < 100
    assert describe(list(range(10**6))) == "a list of 1000000 items"


@pytest.mark.parametrize("path, message", [
    ("/dev/zero", "/dev/zero: expected a regular request file, found a device, pipe or socket"),
    ("/", "/: expected a regular request file, found a folder"),
    ("/nonexistent/req.yaml", "request file not found"),
])
def test_only_regular_files_are_read(path, message):
    with pytest.raises(AdvisorError, match=message):
        read_text(path, "request")


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AdvisorError, match="found a device, pipe or socket"):
        read_text(fifo, "plan")


def test_size_and_encoding_bounds(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b" " * 2001)
    with pytest.raises(AdvisorError, match="big.yaml: the catalog file is 0.0 MB, over the "
                                           "0.002 MB limit"):
        read_text(big, "catalog", max_bytes=2000)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: \xe9\n")
    with pytest.raises(AdvisorError, match="not UTF-8 text"):
        read_text(latin, "request")
