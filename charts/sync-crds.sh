#!/usr/bin/env bash
# Copies the generated CRDs (crds/, the one source, written by `make crds`) into the Helm chart's
# crds/ folder. Never edit charts/tuneline/crds/tuneline.io_*.yaml by hand:
# tests/unit/test_chart_crds_identical.py fails when they differ from crds/. The chart's only other
# CRD file, kopf.dev_peerings.yaml (kopf's peering CRDs), is left alone.
# Usage: charts/sync-crds.sh [--check]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/crds" dst="$root/charts/tuneline/crds"
if [[ "${1:-}" == "--check" ]]; then
  status=0
  for f in "$src"/*.yaml; do
    cmp -s "$f" "$dst/$(basename "$f")" || { echo "charts/tuneline/crds/$(basename "$f") differs from crds/" >&2; status=1; }
  done
  for f in "$dst"/tuneline.io_*.yaml; do
    [[ -f "$src/$(basename "$f")" ]] || { echo "charts/tuneline/crds/$(basename "$f") is not in crds/" >&2; status=1; }
  done
  [[ $status -eq 0 ]] || echo "run charts/sync-crds.sh" >&2
  exit $status
fi
mkdir -p "$dst"
find "$dst" -maxdepth 1 -name 'tuneline.io_*.yaml' -delete
cp "$src"/*.yaml "$dst"/
echo "synced $(find "$src" -maxdepth 1 -name '*.yaml' | wc -l) CRDs into $dst"
