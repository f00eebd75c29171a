#!/usr/bin/env bash
# Checks the dependency graph against deny.toml with cargo-deny: licences (permissive
# only), sources (crates.io only), bans (no wildcard versions; duplicate versions listed as
# warnings) and, when a copy of the RustSec advisory database is at hand, advisories.
# Installs cargo-deny (pinned) with cargo if it is missing.
#
# Advisories: cargo-deny fetches the database with git from its home, which machines
# without general internet access cannot reach. The check runs offline against a copy in
# cargo-deny's cache ($CARGO_HOME/advisory-dbs, filled by `cargo deny fetch` on a machine
# that can reach it) when there is one, else it tries a fetch and, if that fails, says the
# check was skipped (never silently).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q " $version"; then
  echo "installing cargo-deny $version..."
  cargo install --locked --quiet cargo-deny --version "$version"
fi
cargo deny --log-level error check licenses bans sources
echo "licences, bans, sources: ok"
db=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if compgen -G "$db/*/crates" >/dev/null; then
  cargo deny --log-level error --offline check advisories
  echo "advisories (database in $db): ok"
elif timeout 120 cargo deny --log-level error check advisories 2>"$log"; then
  echo "advisories (fetched): ok"
elif grep -q "failed to fetch advisory database" "$log" || [ ! -s "$log" ]; then
  echo "advisories: SKIPPED, the advisory database could not be fetched and no local copy exists"
else
  cat "$log" >&2
  exit 1
fi
