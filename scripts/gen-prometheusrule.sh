#!/usr/bin/env bash
# Writes manifests/monitoring/prometheusrule.yaml from manifests/prometheus/zt-gateway-rules.yaml,
# the one source of the alert rules: the same groups, under a PrometheusRule
# (monitoring.coreos.com/v1) for clusters that run the Prometheus Operator.
# netns-tests/tests/alert_rules.rs fails when the two files carry different groups.
set -euo pipefail
cd "$(dirname "$0")/.."
src=manifests/prometheus/zt-gateway-rules.yaml
dst=manifests/monitoring/prometheusrule.yaml
{
  echo "# Generated from $src by scripts/gen-prometheusrule.sh: edit that file, then run the script."
  cat <<'YAML'
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: zt-gateway
  labels:
    app.kubernetes.io/name: zt-gateway
    app.kubernetes.io/component: alerting
spec:
YAML
  # Everything from the groups key on, indented under spec.
  sed -n '/^groups:/,$p' "$src" | sed 's/^\(.\)/  \1/'
} >"$dst"
echo "wrote $dst"
