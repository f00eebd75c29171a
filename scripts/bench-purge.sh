#!/usr/bin/env bash
# Purge propagation (issue "Publishers in control"), with the release binary on loopback:
# NODES nodes (default 20) each cache an object from a local origin (nginx, which also
# serves the site's /.well-known/reef.json with a fresh publisher key); `reef purge` sends a
# signed purge to one node; every node's /status says when it accepted the purge and
# removed the object. Reports, over RUNS purges (default 20), the time from acceptance at
# the first node to removal at the last (p50 and max), and per-node delays (p50, p99).
# Installs nginx and curl from Debian if missing (needs root). Binds 127.0.0.1 only and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_packages nginx:nginx curl:curl
cargo build --release --bin reef >/dev/null 2>&1
start_scratch
mkdir -p "$s"/{www/.well-known,run,log,tmp/origin}
runs=${RUNS:-20}
for i in $(seq 0 $((runs - 1))); do head -c 16384 /dev/urandom >"$s/www/obj$i.bin"; done
key=$(target/release/reef publisher keygen --out "$s/site.key" 2>/dev/null)
echo "$key" >"$s/www/.well-known/reef.json"
p_origin=18093
sed -e "s|@SCRATCH@|$s|g" -e "s|@PORT_ORIGIN@|$p_origin|g" scripts/bench/origin-nginx.conf >"$s/origin.conf"
nginx -c "$s/origin.conf" -p "$s" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
python3 scripts/bench/purge.py target/release/reef "$p_origin" "$s" "$runs" "${NODES:-20}"
