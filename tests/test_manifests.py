"""`advisor recommend --export ray-serve|kuberay`: the RayService manifest against KubeRay's
published CRD schema (data/kuberay/, unknown fields rejected as `kubectl apply --validate=strict`
rejects them), the Ray Serve config against Ray's own schema, the fleet's worker groups."""
from __future__ import annotations

import copy

import pytest
import yaml

from advisor import REPO_ROOT
from advisor.cli import main
from advisor.export import load_plan
from advisor.serve.manifests import rayservice, serve_config, worker_groups
from advisor.serve.spec import ServeSpec
from tests.plans import saved_plan

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = REPO_ROOT / "data" / "kuberay" / "rayservice-v1.schema.yaml"
SPEC = ServeSpec(resolutions=((1024, 1024), (768, 768)), max_batch=2, replicas=15,
                 gpu="h100-sxm-80gb")


def strict(schema):
    """The schema with unknown fields rejected wherever it lists the known ones."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft7Validator(strict(yaml.safe_load(SCHEMA.read_text())))


def manifest(total=16, per_server=8):
    return rayservice(SPEC, total, per_server, "example/zimage:1", "2.60.0")


def test_the_manifest_is_a_valid_rayservice(validator):
    errors = [e.message for e in validator.iter_errors(manifest())]
    assert not errors


@pytest.mark.parametrize("spoil, words", [
    (lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
     "'groupName' is a required property"),
    (lambda m: m["spec"]["rayClusterConfig"].update(workerGroupSpec=[]),
     "Additional properties are not allowed"),
    (lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
     ["containers"][0]["resources"]["limits"].update(memory="64 GB"), "does not match"),
    (lambda m: m["spec"].update(serveConfigV2={"applications": []}), "is not of type 'string'"),
])
def test_the_schema_catches_a_spoiled_manifest(validator, spoil, words):
    m = copy.deepcopy(manifest())
    spoil(m)
    assert any(words in e.message for e in validator.iter_errors(m))


@pytest.mark.parametrize("total, per_server, groups", [
    (16, 8, [(2, 8)]), (13, 8, [(1, 8), (1, 5)]), (3, 8, [(1, 3)]), (1, 1, [(1, 1)])])
def test_worker_groups_hold_the_whole_fleet(total, per_server, groups):
    assert worker_groups(total, per_server) == groups
    m = manifest(total, per_server)
    gpus = sum(g["replicas"] * g["template"]["spec"]["containers"][0]["resources"]["limits"]
               ["nvidia.com/gpu"] for g in m["spec"]["rayClusterConfig"]["workerGroupSpecs"])
    assert gpus == total


def test_the_serve_config_is_rays_and_reads_back_as_the_spec():
    config = yaml.safe_load(manifest()["spec"]["serveConfigV2"])
    assert config == serve_config(SPEC)
    app = config["applications"][0]
    assert ServeSpec.from_dict(app["args"]) == SPEC
    generator = app["deployments"][0]
    assert generator["num_replicas"] == 15 and generator["ray_actor_options"]["num_gpus"] == 1
    schema = pytest.importorskip("ray.serve.schema")
    schema.ServeDeploySchema.model_validate(config)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return saved_plan(tmp_path_factory.mktemp("plan") / "plan.yaml")


def test_export_commands_write_the_plans_option(plan, tmp_path, capsys):
    out = tmp_path / "rayservice.yaml"
    assert main(["recommend", "--plan", str(plan), "--export", "kuberay", "--out", str(out),
                 "--image", "example/zimage:1"]) == 0
    doc = yaml.safe_load(out.read_text())
    fleet = load_plan(plan)["results"]["options"][0]["fleet"]
    groups = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert sum(g["replicas"] for g in groups) == fleet["servers"]
    capsys.readouterr()
    assert main(["recommend", "--plan", str(plan), "--export", "ray-serve"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["applications"][0]["deployments"][0]["num_replicas"] == fleet["serving_gpus"]
    assert main(["recommend", "--export", "kuberay"]) == 2
    assert "--export needs --plan" in capsys.readouterr().err
