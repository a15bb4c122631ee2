#!/usr/bin/env bash
# make e2e-kind: the image built from this tree on a kind cluster made for the run, with the chart installed;
# then tests/e2e against that cluster, and one ingest through a real writer Service.
# `e2e-kind.sh check` only checks for Docker, kind and kubectl, so that make stops before installing anything.
# KEEP_CLUSTER=1 keeps the cluster afterwards (kubeconfig in .e2e-kind/kubeconfig); KIND_CLUSTER names it.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-deltaingest-e2e}
IMAGE=deltaingest:e2e # scripts/e2e-kind-stores.yaml runs it too
HELM=${HELM:-.tools/bin/helm}
PORT=${E2E_PORT:-18080}
WORK=.e2e-kind

check() {
  local missing=()
  docker info >/dev/null 2>&1 || missing+=("a running Docker engine ('docker info' failed)")
  command -v kind >/dev/null || missing+=("kind on PATH")
  command -v kubectl >/dev/null || missing+=("kubectl on PATH")
  if ((${#missing[@]})); then
    printf 'e2e-kind needs %s\n' "${missing[@]}" >&2
    echo "e2e-kind: stopped before building, installing or creating anything" >&2
    exit 1
  fi
}

check
[[ ${1:-} == check ]] && exit 0

export KUBECONFIG=$PWD/$WORK/kubeconfig
created='' forward=''
cleanup() {
  [[ -z $forward ]] || kill "$forward" 2>/dev/null || true
  if [[ -n $created && -z ${KEEP_CLUSTER:-} ]]; then
    kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
  fi
}
trap cleanup EXIT

docker build --tag "$IMAGE" .
mkdir -p "$WORK"
if kind get clusters | grep -qx "$CLUSTER"; then
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
  created=1
  kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl apply -f scripts/e2e-kind-stores.yaml
kubectl -n minio rollout status deployment/minio --timeout=300s
kubectl -n analytics rollout status deployment/dynamodb-local --timeout=300s
kubectl -n minio wait job/create-bucket --for=condition=Complete --timeout=300s

# Namespaced: the chart's operator serves only the example's namespace, while tests/e2e runs an operator of
# its own on namespaces of its own; two operators on one resource would fight over it.
"$HELM" upgrade --install deltaingest charts/deltaingest --namespace deltaingest --create-namespace \
  --set image.repository=deltaingest --set image.tag=e2e --set image.pullPolicy=Never \
  --set watch.mode=namespaced --set 'watch.namespaces={analytics}' --wait --timeout 5m

.venv/bin/pytest tests/e2e

kubectl apply -f examples/kubernetes/minio-dynamodb.yaml
# The example asks for production-sized writers; a kind node on a small machine could not schedule two.
kubectl -n analytics patch deltatableingest/events --type merge \
  -p '{"spec":{"writer":{"resources":{"requests":{"cpu":"100m","memory":"256Mi"}}}}}'
kubectl -n analytics wait deltatableingest/events --for=condition=Ready --timeout=600s

kubectl -n analytics port-forward --address 127.0.0.1 service/events-writer "$PORT:8080" \
  >"$WORK/port-forward.log" 2>&1 &
forward=$!
# A producer id and sequence make curl's retries (while the port-forward starts) safe: a repeat is a duplicate.
response=$(curl --silent --show-error --fail-with-body --retry 20 --retry-connrefused --retry-delay 1 \
  -H 'Authorization: Bearer change-me' -H 'Content-Type: application/x-ndjson' \
  -H 'X-Producer-Id: e2e-kind' -H 'X-Sequence: 1' \
  --data-binary @- "http://127.0.0.1:$PORT/v1/ingest" <<'ROWS'
{"event_id":"e2e-1","user_id":1,"kind":"click","amount":"1.50","ts":"2024-05-01T10:00:00Z","day":"2024-05-01"}
{"event_id":"e2e-2","user_id":2,"kind":"view","amount":"0.00","ts":"2024-05-01T10:00:01Z","day":"2024-05-01"}
{"event_id":"e2e-3","user_id":1,"kind":"buy","amount":"12.99","ts":"2024-05-02T09:30:00Z","day":"2024-05-02"}
ROWS
)
echo "ingest through service/events-writer: $response"
if [[ $response != *'"rows": 3'* ]]; then
  echo "e2e-kind: the writer did not acknowledge the 3 rows" >&2
  exit 1
fi
kubectl -n analytics get deltatableingest/events
echo "e2e-kind: passed"
