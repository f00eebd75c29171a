#!/usr/bin/env bash
# Everything CI checks (fmt, clippy -D warnings, the README's test command, the sans-IO
# check of reef-dht), runnable locally: the same script CI runs.
set -euo pipefail
exec "$(dirname "$0")/../.ci/run"
