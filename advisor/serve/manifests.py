"""Deployment files of a saved plan's option: the Ray Serve config (`serve deploy`, or a
RayService's `serveConfigV2`) and a KubeRay `RayService` manifest whose GPU worker groups are
the plan's fleet (servers x GPUs per server, the spare GPUs included, so that Ray has somewhere
to restart a replica whose node failed). tests/test_manifests.py checks the manifest against
KubeRay's published CRD schema (data/kuberay/).
"""
from __future__ import annotations

import yaml

from advisor.serve.app import APP_NAME, IMPORT_PATH
from advisor.serve.spec import INGRESS_OPTIONS, ServeSpec

HTTP_PORT = 8000
# Per GPU of a worker pod, what the host gives the pipeline beside its GPU (the text encoder's
# prompt handling, PNG encoding, the weights on their way from disk): edit them for your nodes.
CPUS_PER_GPU = 8
MEMORY_GIB_PER_GPU = 64
HEAD = {"cpu": "4", "memory": "16Gi"}


def serve_config(spec: ServeSpec) -> dict:
    """The Ray Serve config of the spec (ray.serve.schema.ServeDeploySchema)."""
    return {
        "http_options": {"host": "0.0.0.0", "port": HTTP_PORT},
        "applications": [{
            "name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH,
            "args": spec.as_dict(),
            "deployments": [{"name": "Generator", **spec.generator_options()},
                            {"name": "Ingress", **INGRESS_OPTIONS}],
        }],
    }


def worker_groups(total_gpus: int, gpus_per_server: int) -> list[tuple[int, int]]:
    """(servers, GPUs each) covering `total_gpus`: full servers, then one with the rest."""
    full, rest = divmod(total_gpus, gpus_per_server)
    return [(n, k) for n, k in ((full, gpus_per_server), (1 if rest else 0, rest)) if n]


def rayservice(spec: ServeSpec, total_gpus: int, gpus_per_server: int, image: str,
               ray_version: str, name: str = "zimage-advisor") -> dict:
    """A KubeRay RayService (ray.io/v1) serving the spec on `total_gpus` GPUs in servers of
    `gpus_per_server`; the image must hold this project with its serve and probe extras."""
    groups = []
    for i, (servers, gpus) in enumerate(worker_groups(total_gpus, gpus_per_server)):
        groups.append({
            "groupName": f"gpu-{gpus}x" + ("" if i == 0 else "-rest"),
            "replicas": servers, "minReplicas": servers, "maxReplicas": servers,
            "rayStartParams": {},
            "template": {"spec": {"containers": [{
                "name": "ray-worker", "image": image,
                "resources": {"limits": _resources(gpus), "requests": _resources(gpus)}}]}},
        })
    head = {"rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [{
                "name": "ray-head", "image": image,
                "resources": {"limits": dict(HEAD), "requests": dict(HEAD)},
                "ports": [{"containerPort": 6379, "name": "gcs"},
                          {"containerPort": 8265, "name": "dashboard"},
                          {"containerPort": 10001, "name": "client"},
                          {"containerPort": HTTP_PORT, "name": "serve"}]}]}}}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(spec), sort_keys=False),
            "rayClusterConfig": {"rayVersion": ray_version, "enableInTreeAutoscaling": False,
                                 "headGroupSpec": head, "workerGroupSpecs": groups},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a RayService's serveConfigV2) as YAML literal blocks."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)


def _resources(gpus: int) -> dict:
    return {"nvidia.com/gpu": gpus, "cpu": str(CPUS_PER_GPU * gpus),
            "memory": f"{MEMORY_GIB_PER_GPU * gpus}Gi"}
