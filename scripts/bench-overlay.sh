#!/usr/bin/env bash
# The overlay's figures (issue "reef-node: the overlay"), with the release binary on loopback:
#   1. peer-transfer throughput of a 100 MiB object between two nodes vs the same object
#      fetched by reef from a local origin (nginx serving the file), median of RUNS, ratio;
#   2. locate latency on a 20-node network (POST /locate on the admin port, timed inside
#      the node): p50 and p99 for URLs some node holds and for URLs no node holds;
#   3. memory (VmRSS) of an idle node, and of a node of the 20-node network;
#   4. the transport alone (TCP, key layer, noise, yamux: `node/benches/overlay_stack.rs`)
#      carrying 100 MiB between two swarms: what any peer transfer costs at least, before the
#      receiving node hashes, stores and serves the object.
# Installs nginx and curl from Debian if missing (needs root). Binds 127.0.0.1 only and stops
# everything it started. Environment: RUNS (default 5), NODES (20), LOCATES (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --bin reef >/dev/null 2>&1
cargo bench --no-run -q -p reef-node --bench overlay_stack >/dev/null 2>&1
s=$(mktemp -d)
pid_origin=
cleanup() { [ -n "$pid_origin" ] && kill "$pid_origin" 2>/dev/null || true; sleep 0.3; rm -rf "$s"; }
trap cleanup EXIT
mkdir -p "$s"/{www,run,log,tmp/origin}
head -c $((100 << 20)) /dev/urandom >"$s/www/100m.bin"
for i in $(seq 1 64); do head -c 4096 /dev/urandom >"$s/www/small$i.bin"; done
p_origin=18091
sed -e "s|@SCRATCH@|$s|g" -e "s|@PORT_ORIGIN@|$p_origin|g" scripts/bench/origin-nginx.conf >"$s/origin.conf"
nginx -c "$s/origin.conf" -p "$s" >/dev/null 2>&1 &
pid_origin=$!
sleep 0.5
python3 scripts/bench/overlay.py target/release/reef "$p_origin" "$s" \
  "${RUNS:-5}" "${NODES:-20}" "${LOCATES:-1000}"
RUNS="${RUNS:-5}" cargo bench -q -p reef-node --bench overlay_stack 2>/dev/null
