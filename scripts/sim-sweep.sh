#!/usr/bin/env bash
# Runs a scenario over many seeds and checks each report with a Python expression; prints the
# first failing seed and the command that replays it.
# Usage: scripts/sim-sweep.sh SCENARIO SEEDS 'CHECK' [reef-sim run options...]
# CHECK sees `r` (the JSON report), e.g.
#   scripts/sim-sweep.sh coral-flash-crowd 20 "r['variants']['coral']['origin_fetches'] <= 14" --variant coral
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,7p' "$0"; exit 2; }
scenario=$1 seeds=$2 check=$3
shift 3
cargo build --release -p reef-sim >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for seed in $(seq 1 "$seeds"); do
  target/release/reef-sim run --scenario "$scenario" --seed "$seed" --json "$out/r.json" "$@" 2>/dev/null
  if ! python3 -c "import json,sys; r=json.load(open('$out/r.json')); sys.exit(0 if ($check) else 1)"; then
    echo "seed $seed fails: $check"
    echo "replay: target/release/reef-sim run --scenario $scenario --seed $seed $*"
    exit 1
  fi
  echo "seed $seed ok"
done
echo "all $seeds seeds pass"
