#!/usr/bin/env bash
# The suite beside a CPU hog, as on a shared CI machine: one busy loop per core, then the
# whole suite RUNS times (default 5). Prints one line per run; exit 1 if any run failed.
#   make test-under-load            or            bash tests/under_load.sh 5
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
hogs=()
for _ in $(seq "$(nproc)"); do python3 -c 'while True: pass' & hogs+=($!); done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
failed=0
for run in $(seq "$runs"); do
  log=$(mktemp)
  start=$(date +%s)
  if .venv/bin/python -m pytest -q -n auto -p no:cacheprovider >"$log" 2>&1; then verdict=passed; else verdict=FAILED; failed=1; fi
  echo "run $run: $verdict in $(( $(date +%s) - start )) s: $(tail -1 "$log")"
  [ "$verdict" = FAILED ] && grep -E '^FAILED' "$log"
  rm -f "$log"
done
exit $failed
