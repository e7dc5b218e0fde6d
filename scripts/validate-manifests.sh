#!/usr/bin/env bash
# Validates the Kubernetes manifests: renders each overlay with kustomize (kubectl kustomize),
# checks every built-in kind against the Kubernetes 1.33 schemas (kubernetes-validate,
# strict), and checks WireGuardPeer examples against the generated CRD schema.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v kubectl >/dev/null 2>&1 || { echo "kubectl (with kustomize) is needed to render the overlays" >&2; exit 1; }
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in manifests/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  # ServiceMonitor and PrometheusRule are prometheus-operator kinds without a built-in schema:
  # kubernetes-validate warns about them and checks the rest.
  kubernetes-validate --strict --quiet -k 1.33.0 "$out/$name.yaml"
  echo "ok   overlay $name renders and validates"
done
python3 scripts/validate-manifests.py
