"""Cut KubeRay's RayService CRD down to the part `advisor recommend --export kuberay` writes:
the v1 openAPIV3Schema with, below spec, only the fields the export uses (and the scalar ones
beside them), descriptions dropped. tests/test_manifests.py validates the export against it.

Usage: python scripts/vendor_kuberay_schema.py ray.io_rayservices.yaml SOURCE_URL > OUT.yaml
"""
import sys

import yaml

# path of property names -> the properties kept there (None: the whole subtree)
KEEP = {
    (): {"apiVersion", "kind", "metadata", "spec"},
    ("spec",): {"rayClusterConfig", "serveConfigV2", "deploymentUnhealthySecondThreshold",
                "serviceUnhealthySecondThreshold", "excludeHeadPodFromServeSvc"},
    ("spec", "rayClusterConfig"): {"rayVersion", "enableInTreeAutoscaling", "headGroupSpec",
                                   "workerGroupSpecs"},
    ("spec", "rayClusterConfig", "headGroupSpec"): {"rayStartParams", "serviceType",
                                                    "template"},
    ("spec", "rayClusterConfig", "workerGroupSpecs"): {"groupName", "replicas", "minReplicas",
                                                       "maxReplicas", "numOfHosts",
                                                       "rayStartParams", "template"},
}
TEMPLATE = {(): {"metadata", "spec"}, ("spec",): {"containers", "nodeSelector", "tolerations"},
            ("spec", "containers"): {"name", "image", "imagePullPolicy", "resources", "ports",
                                     "env", "command", "args"}}


def prune(node, path=(), keep=KEEP):
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if k != "description"}
        if node.get("type") == "array" and "items" in node:
            node["items"] = prune(node["items"], path, keep)
            return node
        if "properties" in node:
            if path and path[-1] == "template" and keep is KEEP:
                return prune(node, (), TEMPLATE)
            allowed = keep.get(path)
            props = {k: (v if allowed is None else prune(v, path + (k,), keep))
                     for k, v in node["properties"].items() if allowed is None or k in allowed}
            if allowed is None:
                props = {k: prune(v, path + (k,), {}) for k, v in props.items()}
            node["properties"] = props
            if "required" in node:
                node["required"] = [r for r in node["required"] if r in props]
        return node
    if isinstance(node, list):
        return [prune(v, path, keep) for v in node]
    return node


def main(crd_path: str, source: str) -> None:
    crd = yaml.safe_load(open(crd_path))
    v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = prune(v1["schema"]["openAPIV3Schema"])
    print(f"# KubeRay RayService CRD, version v1: openAPIV3Schema cut to the fields\n"
          f"# `advisor recommend --export kuberay` writes (scripts/vendor_kuberay_schema.py).\n"
          f"# Source: {source}\n# License: Apache-2.0 (KubeRay)")
    print(yaml.safe_dump(schema, sort_keys=True, width=100), end="")


if __name__ == "__main__":
    main(*sys.argv[1:])
