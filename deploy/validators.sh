#!/usr/bin/env bash
# Installs the pinned tools the deploy tests validate with, so that the tests
# themselves need no network: kubeconform, kustomize, the Compose Specification's
# reference loader (compose-go, the library `docker compose config` runs), and
# KEDA's ScaledObject CRD. Kubernetes' own JSON schemas come with the
# kubernetes-validate package of the dev extras.
#   deploy/validators.sh [DEST]     (default: build/deploy-tools)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.1
COMPOSE_GO_VERSION=v2.16.2
KEDA_VERSION=v2.21.0

dest="$(realpath -m "${1:-build/deploy-tools}")"
mkdir -p "$dest/bin" "$dest/crds"
export GOBIN="$dest/bin" GOFLAGS=-buildvcs=false

go install "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
# The module's validator command installs as `cmd`.
go install "github.com/compose-spec/compose-go/v2/cmd@${COMPOSE_GO_VERSION}"
mv -f "$dest/bin/cmd" "$dest/bin/compose-spec"

# KEDA publishes its CRDs inside its Go module: take the ScaledObject's.
keda_dir="$(go mod download -json "github.com/kedacore/keda/v2@${KEDA_VERSION}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
install -m 0644 "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dest/crds/"

cat > "$dest/versions.txt" <<VERSIONS
kubeconform ${KUBECONFORM_VERSION}
kustomize ${KUSTOMIZE_VERSION}
compose-go ${COMPOSE_GO_VERSION}
keda ${KEDA_VERSION}
VERSIONS
