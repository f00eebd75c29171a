#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60; the issue's figures use 600),
# JOBS at once (default 1), and prints executions and coverage per target. Needs the nightly
# toolchain (libFuzzer's sanitizer flags) and installs cargo-fuzz from crates.io if missing.
# Crashes are saved under fuzz/artifacts/TARGET/ and fail the script; the corpus grows under
# fuzz/corpus/TARGET/ (not committed), starting from the seeds in fuzz/seeds/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
jobs=${JOBS:-1}
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=$(cd fuzz && cargo +nightly fuzz list)
cd fuzz
cargo +nightly fuzz build --release >/dev/null 2>&1 || cargo +nightly fuzz build --release
mkdir -p logs
run() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  local seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  if cargo +nightly fuzz run --release "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    echo ok >"logs/$t.status"
  else
    echo failed >"logs/$t.status"
  fi
}
running=0
for t in $targets; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
failed=0
printf '%-16s %12s %10s %8s %8s %s\n' target executions "exec/s" cov ft result
for t in $targets; do
  log="logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1)
  cov=$(echo "$last" | awk '{print $2}'); ft=$(echo "$last" | awk '{print $4}')
  status=$(cat "logs/$t.status")
  [ "$status" = ok ] || failed=1
  printf '%-16s %12s %10s %8s %8s %s\n' "$t" "$execs" "$speed" "${cov:-?}" "${ft:-?}" "$status"
done
if [ "$failed" = 1 ]; then
  echo "a target failed: see fuzz/logs/ and the reproducer in fuzz/artifacts/" >&2
  exit 1
fi
