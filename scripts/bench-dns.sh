#!/usr/bin/env bash
# reef-dns against Knot DNS on the same machine: each server pinned to core 0, dnsperf on
# core 1, the same zone (cdn.test; Knot serves a static wildcard with 3 A records, reef
# computes an answer of 3 proxies from a roster of 50 for every query). Prints queries/s
# and latency for each, median of 3 runs of 10 s after a warm-up.
# Installs dnsperf and knot from Debian if missing (needs root). Binds 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -p reef-dns --example serve >/dev/null 2>&1
scratch=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT
port_reef=5300 port_knot=5301
# Knot: the reference configuration, rendered.
mkdir -p "$scratch/dns/knot"
sed -e "s|@PORT_DNS@|$port_knot|" -e "s|@SCRATCH@|$scratch|g" scripts/bench/knot.conf >"$scratch/knot.conf"
cp scripts/bench/cdn.test.zone "$scratch/dns/cdn.test.zone"
taskset -c 0 knotd -c "$scratch/knot.conf" >"$scratch/knot.log" 2>&1 &
pid_knot=$!
pids+=($pid_knot)
taskset -c 0 target/release/examples/serve "127.0.0.1:$port_reef" cdn.test 50 >"$scratch/reef.log" 2>&1 &
pid_reef=$!
pids+=($pid_reef)
sleep 1
# 100 distinct names, all under the zone.
for i in $(seq 1 100); do echo "www.site$i.example.com.cdn.test A"; done >"$scratch/queries"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process, in clock ticks
hz=$(getconf CLK_TCK)
run() { # port seconds pid [rate] -> "qps avg_ms us_cpu_per_answer"
  local before after out
  before=$(ticks "$3")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$scratch/queries" -l "$2" -c 8 -Q "${4:-1000000}" 2>/dev/null)
  after=$(ticks "$3")
  echo "$out" | awk -v t=$((after - before)) -v hz="$hz" \
    '/Queries completed/ {n=$3} /Queries per second/ {q=$4} /Average Latency/ {l=$4*1000}
     END {printf "%.0f %.3f %.2f\n", q, l, (n > 0 ? t / hz * 1e6 / n : 0)}'
}
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
echo "Saturation (dnsperf as fast as it can; on one core dnsperf itself tops out near Knot's rate):"
echo "server   qps(median)  [runs]                 avg ms   CPU us/answer (median)"
declare -A best
for who in reef knot; do
  port=$port_reef pid=$pid_reef
  [ "$who" = knot ] && port=$port_knot pid=$pid_knot
  run "$port" 2 "$pid" >/dev/null # warm-up
  results=$(for _ in 1 2 3; do run "$port" 10 "$pid"; done)
  qps=$(echo "$results" | awk '{print $1}' | median)
  lat=$(echo "$results" | awk '{print $2}' | median)
  cpu=$(echo "$results" | awk '{print $3}' | median)
  best[$who]=$qps
  printf '%-8s %-12s [%s] %-8s %s\n' "$who" "$qps" "$(echo "$results" | awk '{print $1}' | tr '\n' ' ')" "$lat" "$cpu"
done
# Latency at a fixed load: half of Knot's saturation rate (the target), or, if reef cannot
# sustain that, half of reef's own; p50/p99 from dnsperf's per-query report (-v), 10 s.
half=$(( ${best[knot]} / 2 ))
[ "$half" -lt "${best[reef]}" ] || half=$(( ${best[reef]} / 2 ))
for who in reef knot; do
  port=$port_reef; [ "$who" = knot ] && port=$port_knot
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$scratch/queries" -l 10 -c 8 -Q "$half" -v 2>/dev/null |
    awk '/^> / {print $NF * 1000}' | sort -n |
    awk -v who="$who" -v rate="$half" '{a[NR]=$1} END {if (NR) printf "%-8s at %d q/s: %d answers, p50 %.3f ms, p99 %.3f ms\n", who, rate, NR, a[int(NR*0.5)+1], a[int(NR*0.99)+1]}'
done
echo "knot version: $(knotd --version 2>&1 | head -1)"
