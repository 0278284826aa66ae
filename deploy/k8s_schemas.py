"""Build offline, strict JSON schemas for the Kubernetes kinds the chart renders, for kubeconform.

kubeconform normally downloads schemas from GitHub at run time; this machine (and CI) reach only package
registries. The `kubernetes-validate` package on PyPI ships the Kubernetes schemas, with references into a
shared `_definitions.json` that kubeconform cannot follow from local files, so each schema we need is
written standalone with the definitions inlined.

Usage: python deploy/k8s_schemas.py WHEEL_OR_DIR OUT_DIR [K8S_VERSION]
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

KINDS = (
    "service-v1",
    "configmap-v1",
    "persistentvolumeclaim-v1",
    "deployment-apps-v1",
    "statefulset-apps-v1",
    "job-batch-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "poddisruptionbudget-policy-v1",
)


def main(source: Path, out: Path, version: str) -> None:
    folder = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    with zipfile.ZipFile(source) as wheel:

        def read(name: str) -> str:
            return wheel.read(folder + name).decode()

        defs = json.loads(read("_definitions.json"))["$defs"]
        out.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            text = read(f"{kind}.json").replace('"/api/_definitions.json#/$defs/', '"#/$defs/')
            schema = json.loads(text)
            schema["$defs"] = defs
            (out / f"{kind}.json").write_text(json.dumps(schema))
    print(f"wrote {len(KINDS)} standalone schemas for Kubernetes {version} to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "1.31.0")
