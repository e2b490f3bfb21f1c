"""deploy/kuberay/raycluster.yaml, checked offline.

What is checked against what (docs/cluster.md, "What the manifest test checks"):
- the Service, and the RayCluster's metadata and every pod template in it, against Kubernetes' own
  OpenAPI schemas in their strict form (unknown fields refused), as the `kubernetes-validate` package
  ships them;
- the RayCluster's own fields (head group, worker groups, rayStartParams) against the short list below,
  written from KubeRay's v1 API types. It is not KubeRay's CRD: no package on PyPI, npm or Debian ships
  that file, so a field KubeRay added or renamed after that list is not caught here;
- the references between the documents: the Service finds the head pod and a port it names, the
  camera list `up` reads is a mounted Secret.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kuberay" / "raycluster.yaml"
K8S_VERSION = kubernetes_validate.latest_version()

# RayCluster fields as KubeRay's v1 API declares them (ray-operator/apis/ray/v1/raycluster_types.go):
# field -> the Python type its YAML value must have. Only pod templates are left to Kubernetes' schema.
SPEC_FIELDS = {"headGroupSpec": dict, "workerGroupSpecs": list, "rayVersion": str, "enableInTreeAutoscaling": bool,
               "autoscalerOptions": dict, "headServiceAnnotations": dict, "suspend": bool, "managedBy": str,
               "gcsFaultToleranceOptions": dict}
HEAD_FIELDS = {"serviceType": str, "headService": dict, "enableIngress": bool, "rayStartParams": dict,
               "template": dict}
WORKER_FIELDS = {"groupName": str, "replicas": int, "minReplicas": int, "maxReplicas": int, "numOfHosts": int,
                 "rayStartParams": dict, "template": dict, "scaleStrategy": dict, "suspend": bool,
                 "idleTimeoutSeconds": int}
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def documents(text: str) -> dict[str, dict]:
    """The manifest's documents by kind."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    kinds = [doc.get("kind") for doc in docs]
    assert len(set(kinds)) == len(kinds), f"one document of each kind expected, got {kinds}"
    return {doc["kind"]: doc for doc in docs}


def kubernetes_schema(name: str) -> jsonschema.Validator:
    """A validator for one of Kubernetes' own types, strict (unknown fields refused), from kubernetes-validate."""
    folder = resources.files(kubernetes_validate) / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    schema = json.loads((folder / f"{name}.json").read_text())
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_problems(document: dict) -> list[str]:
    """A whole Kubernetes object (Service, ConfigMap, ...) against its strict schema."""
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{document['kind']}: {'.'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


def _fields(where: str, value: object, allowed: dict[str, type], required: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: a map expected, got {type(value).__name__}"]
    problems = [f"{where}.{key}: not a field of KubeRay's v1 RayCluster" for key in value if key not in allowed]
    problems += [f"{where}.{key}: required" for key in required if key not in value]
    problems += [f"{where}.{key}: {allowed[key].__name__} expected, got {type(item).__name__}"
                 for key, item in value.items()
                 if key in allowed and not (isinstance(item, allowed[key]) and not (allowed[key] is int and
                                                                                    isinstance(item, bool)))]
    return problems


def _group(where: str, group: dict, allowed: dict[str, type], required: tuple[str, ...]) -> list[str]:
    problems = _fields(where, group, allowed, required)
    if problems:
        return problems
    params = group.get("rayStartParams", {})
    problems += [f"{where}.rayStartParams.{key}: a string expected (KubeRay's map[string]string), got "
                 f"{type(value).__name__}" for key, value in params.items() if not isinstance(value, str)]
    template = kubernetes_schema("podtemplatespec-v1")
    problems += [f"{where}.template.{'.'.join(map(str, error.absolute_path))}: {error.message}"
                 for error in template.iter_errors(group["template"])]
    return problems


def raycluster_problems(cluster: dict) -> list[str]:
    problems = []
    if cluster.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion: ray.io/v1 expected, got {cluster.get('apiVersion')!r}")
    if not DNS_LABEL.match(str(cluster.get("metadata", {}).get("name", ""))):
        problems.append("metadata.name: a DNS label expected (KubeRay names Services and pods after it)")
    problems += [f"metadata.{'.'.join(map(str, error.absolute_path))}: {error.message}"
                 for error in kubernetes_schema("objectmeta-meta-v1").iter_errors(cluster.get("metadata", {}))]
    spec = cluster.get("spec")
    problems += _fields("spec", spec, SPEC_FIELDS, ("headGroupSpec",))
    if problems:
        return problems
    head = spec["headGroupSpec"]
    problems += _group("spec.headGroupSpec", head, HEAD_FIELDS, ("template",))
    if head.get("serviceType", "ClusterIP") not in SERVICE_TYPES:
        problems.append(f"spec.headGroupSpec.serviceType: one of {SERVICE_TYPES}, got {head['serviceType']!r}")
    for index, group in enumerate(spec.get("workerGroupSpecs", [])):
        where = f"spec.workerGroupSpecs[{index}]"
        group_problems = _group(where, group, WORKER_FIELDS, ("groupName", "template"))
        if not group_problems and not (group.get("minReplicas", 0) <= group.get("replicas", 0)
                                       <= group.get("maxReplicas", 2**31 - 1)):
            group_problems.append(f"{where}: minReplicas <= replicas <= maxReplicas expected")
        problems += group_problems
    return problems


def reference_problems(docs: dict[str, dict]) -> list[str]:
    """The Service reaches the head pod's labels port; the sources file `up` reads is a mounted Secret."""
    cluster, service = docs["RayCluster"], docs["Service"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    problems = []
    # KubeRay labels the pods it makes ray.io/cluster=<name>, ray.io/node-type=head|worker
    wanted = {"ray.io/cluster": cluster["metadata"]["name"], "ray.io/node-type": "head"}
    if service["spec"]["selector"] != wanted:
        problems.append(f"Service selector {service['spec']['selector']} does not find the head pod ({wanted})")
    head_ports = {port.get("name") for container in head["containers"] for port in container.get("ports", [])}
    problems += [f"Service port {port['name']}: targetPort {port['targetPort']!r} is no port of the head pod"
                 for port in service["spec"]["ports"] if port["targetPort"] not in head_ports]
    volumes = {volume["name"]: volume for volume in head.get("volumes", [])}
    for container in head["containers"]:
        command = container.get("command", []) + container.get("args", [])
        for sources in [item[1:] for item in command if item.startswith("@")]:
            mounts = [m for m in container.get("volumeMounts", []) if sources.startswith(m["mountPath"] + "/")]
            if not mounts or "secret" not in volumes.get(mounts[0]["name"], {}):
                problems.append(f"{container['name']}: the sources file {sources} is not on a mounted Secret")
    return problems


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict]:
    return documents(MANIFEST.read_text())


def test_the_manifest_is_a_raycluster_and_a_service(manifest):
    assert set(manifest) == {"RayCluster", "Service"}


def test_the_raycluster_is_valid(manifest):
    assert raycluster_problems(manifest["RayCluster"]) == []


def test_the_service_is_valid(manifest):
    assert kubernetes_problems(manifest["Service"]) == []


def test_the_documents_refer_to_each_other_rightly(manifest):
    assert reference_problems(manifest) == []


def test_the_head_runs_up_with_the_camera_list_and_exposes_the_labels_port(manifest):
    head = manifest["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    up = [c for c in head if c.get("command", [])[1:4] == ["run.py", "up", "--cluster"]]
    assert len(up) == 1
    assert "--source" in up[0]["command"]
    assert {"name": "labels", "containerPort": 5557} in up[0]["ports"]


def _broken(manifest: dict[str, dict], kind: str, path: tuple, value: object) -> dict:
    document = copy.deepcopy(manifest[kind])
    node = document
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


WORKER = ("spec", "workerGroupSpecs", 0)
WORKER_CONTAINER = WORKER + ("template", "spec", "containers", 0)


@pytest.mark.parametrize("path, value, named", [
    (("spec", "headGroupSpec", "rayStartParam"), {}, "spec.headGroupSpec.rayStartParam: not a field"),
    (WORKER + ("replicas",), "2", "replicas: int expected, got str"),
    (WORKER + ("rayStartParams", "num-cpus"), 2, "rayStartParams.num-cpus: a string expected"),
    (WORKER + ("groupName",), KeyError, "groupName: required"),
    (WORKER + ("minReplicas",), 3, "minReplicas <= replicas <= maxReplicas"),
    (WORKER_CONTAINER + ("imagePulPolicy",), "IfNotPresent", "'imagePulPolicy' was unexpected"),
    (WORKER_CONTAINER + ("resources", "requests", "cpu"), ["2"], "template.spec.containers.0.resources.requests.cpu"),
    (WORKER_CONTAINER + ("name",), KeyError, "'name' is a required property"),
    (("spec", "headGroupSpec", "serviceType"), "Internal", "serviceType: one of"),
    (("apiVersion",), "ray.io/v1alpha2", "apiVersion: ray.io/v1 expected"),
    (("metadata", "labels", "app.kubernetes.io/name"), 7, "metadata.labels.app.kubernetes.io/name"),
])
def test_a_broken_raycluster_is_refused_naming_the_field(manifest, path, value, named):
    problems = raycluster_problems(_broken(manifest, "RayCluster", path, value))
    assert any(named in problem for problem in problems), problems


@pytest.mark.parametrize("path, value, named", [
    (("spec", "ports", 0, "port"), "5557", "spec.ports.0.port"),
    (("spec", "ports", 0, "protocl"), "TCP", "'protocl' was unexpected"),
    (("spec", "selector"), ["ray.io/cluster=streamer"], "spec.selector"),
])
def test_a_broken_service_is_refused_naming_the_field(manifest, path, value, named):
    problems = kubernetes_problems(_broken(manifest, "Service", path, value))
    assert any(named in problem for problem in problems), problems


def test_a_service_that_misses_the_head_or_its_port_is_refused(manifest):
    docs = dict(manifest, Service=_broken(manifest, "Service", ("spec", "selector", "ray.io/node-type"), "worker"))
    assert any("does not find the head pod" in p for p in reference_problems(docs))
    docs = dict(manifest, Service=_broken(manifest, "Service", ("spec", "ports", 0, "targetPort"), "label"))
    assert any("is no port of the head pod" in p for p in reference_problems(docs))


def test_a_camera_list_outside_a_secret_is_refused(manifest):
    up = ("spec", "headGroupSpec", "template", "spec", "containers", 1, "command")
    command = [item if not item.startswith("@") else "@/tmp/cameras.txt" for item in
               manifest["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"][1]["command"]]
    docs = dict(manifest, RayCluster=_broken(manifest, "RayCluster", up, command))
    assert any("is not on a mounted Secret" in p for p in reference_problems(docs))
