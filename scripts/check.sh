#!/usr/bin/env bash
# The full check CI runs: formatting, lints, then the README's test command.
# Needs only the Rust toolchain (cargo, rustfmt, clippy); installs those components if absent.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (the README's test command)"
cargo test --workspace
echo "== reef-dht stays sans-IO"
scripts/dht-sans-io.sh
echo "ok"
