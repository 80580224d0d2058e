"""`advisor probe --ray`: a local Ray cluster on this machine's CPUs probes the tiny pipeline;
the records land in the node's file with its identity, and a second run resumes."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install -e '.[ray]'")
pytest.importorskip("torch")

from advisor.cli import main  # noqa: E402
from advisor.records import read_records  # noqa: E402
from probes.runs import host_fingerprint  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().get_node_id()
    ray.shutdown()


def test_ray_probes_the_node_into_its_file_and_resumes(cluster, tmp_path, capsys):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("groups:\n  - shapes: [[64, 64]]\n    steps: 2\n")
    two.write_text("groups:\n  - shapes: [[64, 64]]\n    batch: [1, 2]\n    steps: 2\n")
    out = tmp_path / "fleet"

    def probe(grid):
        assert main(["probe", "--grid", str(grid), "--tiny", "--device", "cpu", "--out", str(out),
                     "--ray", "auto"]) == 0  # the session the fixture started is kept
        return capsys.readouterr().out

    text = probe(one)
    assert f"cpu: node {cluster} probes {out / 'cpu.jsonl'}" in text
    assert "1 records from node" in text
    text = probe(two)  # the first config is in the file already: only the second one runs
    assert "1 records from node" in text and "1 configs already there" in text
    found, problems = read_records(out / "cpu.jsonl")
    assert problems == [] and [r["config"]["batch"] for r in found] == [1, 2]
    for record in found:
        assert record["status"] == "ok" and record["architecture"] == "tiny"
        assert record["host"]["ray_node_id"] == cluster
        assert record["host"]["fingerprint"] == host_fingerprint()  # the same machine
