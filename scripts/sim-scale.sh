#!/usr/bin/env bash
# Scale benchmark of reef-sim: a flash-crowd run of the coral variant at growing node counts,
# printing wall time, events per second and peak RSS for each. Each run is bounded by a
# timeout (default an hour: the 100,000-node hour takes about 38 minutes on 2 cores).
# Usage: scripts/sim-scale.sh [NODES ...] (default 10000 100000)
# Environment: DURATION (workload seconds, default 3600), TIMEOUT (seconds per run, default 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p reef-sim >/dev/null
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
duration=${DURATION:-3600}
limit=${TIMEOUT:-3600}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%8s %10s %12s %14s %10s\n' nodes wall_s events events_per_s rss_mb
for n in "${sizes[@]}"; do
  if timeout "$limit" target/release/reef-sim run --scenario flash-crowd --variant coral \
      --nodes "$n" --duration "$duration" --json "$out/r.json" 2>/dev/null; then
    python3 -c "
import json; r = json.load(open('$out/r.json'))
print('%8d %10.1f %12d %14.0f %10.0f' % (r['nodes'], r['wall_s'], r['events'], r['events_per_s'], r['peak_rss_mb']))"
  else
    printf '%8d did not finish within %s s\n' "$n" "$limit"
  fi
done
