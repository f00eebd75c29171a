#!/usr/bin/env bash
# Checks the sans-IO contract of reef-dht: no async runtime, libp2p or socket crate among its
# dependencies, and no clock or OS entropy read anywhere in its source (ring, used for
# SHA-256, brings getrandom along; the source check keeps its SystemRandom unused).
set -euo pipefail
cd "$(dirname "$0")/.."

deps=$(cargo tree -p reef-dht -e normal --prefix none | awk '{print $1}' | sort -u)
for banned in tokio libp2p mio socket2 async-std smol hyper; do
  if grep -qx "$banned" <<<"$deps"; then
    echo "reef-dht depends on $banned: the DHT must stay free of IO" >&2
    exit 1
  fi
done
if grep -rnE 'Instant::now|SystemTime::now|thread_rng|rand::rng\(|from_os_rng|from_entropy|OsRng' dht/src; then
  echo "reef-dht reads a clock or OS entropy (above): time and randomness must come from the caller" >&2
  exit 1
fi
echo "reef-dht: no IO crates, no clock, no OS entropy"
