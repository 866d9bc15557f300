#!/usr/bin/env bash
# The demo: a local control plane, the CRDs, the MediaNest example, the operator, the
# NetworkPolicies it generates, and a drift correction. Stops what it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ -z "${MEDIANEST_DEMO_INNER:-}" ]; then
  export MEDIANEST_DEMO_INNER=1
  exec e2e/with-control-plane.sh "$0" "$@"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/medianest-operator/target}
# MEDIANEST_DEMO_LISTEN and MEDIANEST_DEMO_LOG let two demos run side by side.
listen=${MEDIANEST_DEMO_LISTEN:-127.0.0.1:18080}
log_file=${MEDIANEST_DEMO_LOG:-${TMPDIR:-/tmp}/medianest-demo-operator.log}
kubectl() {
  "${MEDIANEST_E2E_CACHE:-$HOME/.cache/medianest-e2e}"/k8s-*/bin/kubectl "$@"
}
say() {
  printf '\n\033[1m== %s\033[0m\n' "$*"
}

say "Building the operator"
cargo build --locked --quiet
operator=$CARGO_TARGET_DIR/debug/medianest-operator

say "Installing the CRDs"
kubectl apply --server-side -f crds/crds.yaml
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null

say "Creating the operator's namespace, which keeps the CA and the key of the value hashes"
kubectl create namespace medianest-system --dry-run=client -o yaml | kubectl apply -f -

say "Applying the MediaNest example"
kubectl apply -f manifests/examples/namespaces.yaml
kubectl apply -f manifests/examples/workloads.yaml
kubectl apply -f manifests/examples/policy.yaml
kubectl apply -f manifests/examples/secrets.yaml
# No kubelet runs here, so a restarted workload never reports its rollout as finished and the
# example's pacing (one rollout at a time, 5 minutes each) would harden one workload per
# 5 minutes. The demo lets every workload roll out at once.
kubectl patch msp medianest --type merge -p '{"spec": {"workloads": {"rollout": {"maxConcurrent": 10}}}}'

say "Starting the operator (logs in $log_file)"
"$operator" run --listen "$listen" --log-format plain >"$log_file" 2>&1 &
operator_pid=$!
trap 'kill "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  ready=$(kubectl get msp medianest -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$ready" = True ] && break
  sleep 0.2
done
kubectl get msp medianest
say "Generated NetworkPolicies"
kubectl get networkpolicies -A -l app.kubernetes.io/managed-by=medianest-operator

say "Drift: someone opens the database zone to every source"
kubectl -n medianest-data patch networkpolicy mn-medianest-zone-database --type json \
  -p '[{"op": "add", "path": "/spec/ingress/-", "value": {}}]'
start=$(date +%s%N)
for _ in $(seq 1 100); do
  rules=$(kubectl -n medianest-data get networkpolicy mn-medianest-zone-database -o jsonpath='{.spec.ingress[*].ports[*].port}')
  count=$(kubectl -n medianest-data get networkpolicy mn-medianest-zone-database -o json | grep -c '"from"' || true)
  [ "$count" = 1 ] && break
  sleep 0.05
done
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
echo "restored within ${elapsed} ms (as seen by polling kubectl); ingress ports now: $rules"
kubectl get msp medianest -o wide
say "Hardened workloads (the reverse proxy keeps NET_BIND_SERVICE through its exemption)"
for _ in $(seq 1 50); do
  # The reverse proxy counts as exempted, the other four as hardened.
  counts=$(kubectl get msp medianest -o jsonpath='{.status.hardenedWorkloads} {.status.exemptedWorkloads}')
  read -r hardened exempted <<<"$counts"
  [ $(( ${hardened:-0} + ${exempted:-0} )) -ge 5 ] && break
  sleep 0.2
done
kubectl -n medianest-dmz get deployment reverse-proxy \
  -o jsonpath='{.spec.template.spec.securityContext}{"\n"}{.spec.template.spec.containers[0].securityContext}{"\n"}'
kubectl get namespace medianest-dmz -o jsonpath='{.metadata.labels}{"\n"}'

say "Certificates and generated secrets"
for _ in $(seq 1 50); do
  kubectl -n medianest-app get secret api-tls api-jwt >/dev/null 2>&1 && break
  sleep 0.2
done
kubectl get secrets -A -l app.kubernetes.io/managed-by=medianest-operator
kubectl get secretrotations -A

say "Events"
kubectl get events --field-selector involvedObject.kind=MediaNestSecurityPolicy,involvedObject.name=medianest
