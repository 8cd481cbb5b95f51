#!/usr/bin/env bash
# Deploy, list or remove every ClaimX stage with Bytewax's waxctl (0.12.0 flags only; see
# waxctl/README.md and tests/ops/fixtures/bytewax_deploy_contract.yaml).
#   waxctl/deploy.sh deploy [--yes]  # one `waxctl dataflow deploy` per stage, from waxctl/values/*.yaml;
#                                    # --yes confirms updating stages that are already deployed
#   waxctl/deploy.sh list            # the dataflows waxctl runs in the namespace
#   waxctl/deploy.sh delete          # remove every stage
# DRY_RUN=1: deploy adds `--dry-run -o yaml` (waxctl prints the manifests, applies nothing) and
# delete leaves out --yes (waxctl then only reports what it would delete). PRINT=1 prints the
# commands instead of running them. PYTHON picks the interpreter that has PyYAML and the
# package (default: the project's .venv). The stage list comes from the catalog, less download
# and upload: the chart cannot mount their shared cache (docs/kubernetes.md, "waxctl").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
NAMESPACE=claimx
mapfile -t STAGES < <("$PYTHON" waxctl/command.py stages)
[[ ${#STAGES[@]} -gt 0 ]] || { echo "no stages from waxctl/command.py stages" >&2; exit 1; }

run() {
  if [[ "${PRINT:-}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

deploy() {
  local extra=()
  case "${1:-}" in
    --yes) extra+=(--yes) ;;
    "") ;;
    *) echo "usage: $0 deploy [--yes]" >&2; exit 2 ;;
  esac
  [[ "${DRY_RUN:-}" == 1 ]] && extra+=(--dry-run -o yaml)
  CHART_VALUES_DIR="$(mktemp -d)"
  trap 'rm -rf "$CHART_VALUES_DIR"' EXIT
  for stage in "${STAGES[@]}"; do
    values="waxctl/values/$stage.yaml"
    chart="$CHART_VALUES_DIR/$stage.yaml"
    "$PYTHON" waxctl/command.py chart-values "$values" > "$chart"
    mapfile -t command < <("$PYTHON" waxctl/command.py deploy "$values" "$chart")
    [[ ${#command[@]} -gt 0 ]] || { echo "no command for $stage" >&2; exit 1; }
    run "${command[@]}" "${extra[@]}"
  done
}

case "${1:-}" in
  deploy) shift; deploy "$@" ;;
  list) run waxctl dataflow list --namespace "$NAMESPACE" ;;
  delete)
    confirm=(--yes)
    [[ "${DRY_RUN:-}" == 1 ]] && confirm=()
    for stage in "${STAGES[@]}"; do
      run waxctl dataflow delete "claimx-$stage" --namespace "$NAMESPACE" "${confirm[@]}"
    done
    ;;
  *) echo "usage: $0 deploy [--yes]|list|delete" >&2; exit 2 ;;
esac
