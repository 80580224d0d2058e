"""The dashboard under streamlit's AppTest: every page renders, reacts to input, survives bad
uploads; and the upload parsers it relies on."""
from __future__ import annotations

import json

import pytest

from advisor import REPO_ROOT
from advisor.app_data import parse_records_upload, parse_yaml_mapping, upload_text
from advisor.errors import AdvisorError
from tests.synthetic import make_record

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

APP = str(REPO_ROOT / "app_streamlit.py")
TIMEOUT_S = 120


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest, index: int = 0):
    return at.dataframe[index].value


# --------------------------------------------------------------------------- upload parsers


def test_upload_text_limits():
    with pytest.raises(AdvisorError, match="over the 1 MB limit"):
        upload_text("big.jsonl", b"x" * 1_000_001, max_mb=1)
    with pytest.raises(AdvisorError, match="empty"):
        upload_text("e.yaml", b"  \n")
    with pytest.raises(AdvisorError, match="not UTF-8"):
        upload_text("bin.yaml", b"\x80\x81 pickle")


def test_parse_yaml_mapping_is_safe_and_line_numbered():
    with pytest.raises(AdvisorError, match="line 2"):
        parse_yaml_mapping("r.yaml", b"a: 1\n  b: 2\n")
    with pytest.raises(AdvisorError):
        parse_yaml_mapping("evil.yaml", b"!!python/object/apply:os.system ['true']\n")
    with pytest.raises(AdvisorError, match="mapping"):
        parse_yaml_mapping("list.yaml", b"- 1\n- 2\n")
    assert parse_yaml_mapping("ok.yaml", b"demand: 3\n") == {"demand": 3}


def test_parse_records_upload_names_upload_and_line():
    good = json.dumps(make_record())
    data = "\n".join([good, "{not json", json.dumps({"schema_version": 1}), good]).encode()
    records, problems = parse_records_upload("../my gpu.jsonl", data)
    assert [r["_source"] for r in records] == ["../my gpu.jsonl:1", "../my gpu.jsonl:4"]
    assert problems[0].startswith("../my gpu.jsonl:2: corrupt JSON")
    assert problems[1].startswith("../my gpu.jsonl:3: ")


# --------------------------------------------------------------------------- GPUs page


def test_gpus_page_filters():
    at = open_page("gpus")
    all_rows = len(table(at))
    at.number_input(key="gpus_min_mem").set_value(100).run()
    assert not at.exception
    assert 0 < len(table(at)) < all_rows
    assert (table(at).memory_gb >= 100).all()
