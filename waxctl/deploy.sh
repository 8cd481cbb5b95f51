#!/usr/bin/env bash
# Deploy, list or remove every ClaimX stage with Bytewax's waxctl.
#   waxctl/deploy.sh deploy   # one `waxctl dataflow deploy` per stage, from waxctl/values/*.yaml
#   waxctl/deploy.sh list     # what waxctl runs in the namespace
#   waxctl/deploy.sh delete   # remove every stage (recovery volumes are kept by the chart)
# DRY_RUN=1 prints the commands instead of running them. PYTHON picks the interpreter that has
# PyYAML (default: the project's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
NAMESPACE=claimx
mapfile -t STAGES < <("$PYTHON" waxctl/command.py stages)

run() {
  if [[ "${DRY_RUN:-}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

deploy() {
  CHART_VALUES_DIR="$(mktemp -d)"
  export CHART_VALUES_DIR
  trap 'rm -rf "$CHART_VALUES_DIR"' EXIT
  for stage in "${STAGES[@]}"; do
    values="waxctl/values/$stage.yaml"
    "$PYTHON" waxctl/command.py chart-values "$values" > "$CHART_VALUES_DIR/claimx-$stage.yaml"
    mapfile -t command < <("$PYTHON" waxctl/command.py deploy "$values")
    command=("${command[@]//\$\{CHART_VALUES_DIR\}/$CHART_VALUES_DIR}")
    run "${command[@]}"
  done
}

case "${1:-}" in
  deploy) deploy ;;
  list) run waxctl dataflow list --namespace "$NAMESPACE" ;;
  delete)
    for stage in "${STAGES[@]}"; do
      run waxctl dataflow delete --name "claimx-$stage" --namespace "$NAMESPACE" --yes
    done
    ;;
  *) echo "usage: $0 deploy|list|delete" >&2; exit 2 ;;
esac
