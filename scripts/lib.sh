# Shared by the scripts (sourced, never run on its own).

# need_packages CMD:PACKAGE ...: installs the Debian packages whose command is missing
# (needs root).
need_packages() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# start_scratch: a temporary directory in $s, and $pids, the processes to stop; both are
# cleaned up when the script exits.
start_scratch() {
  s=$(mktemp -d)
  pids=()
  trap stop_scratch EXIT
}

stop_scratch() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$s"
}

# start_origin DIR: serves DIR on a loopback port (Python's http.server, files cacheable for
# an hour, one line per request in $s/origin.log) and sets $port.
start_origin() {
  cat >"$s/origin.py" <<'PY'
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cache-Control", "max-age=3600")
        super().end_headers()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)
server.serve_forever()
PY
  python3 "$s/origin.py" "$1" >"$s/origin.log" 2>&1 &
  pids+=($!)
  port=
  local _
  for _ in $(seq 50); do
    port=$(grep -o 'port [0-9]*' "$s/origin.log" | head -1 | cut -d' ' -f2 || true)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "the origin did not start" >&2
  return 1
}

# build_reef: builds the reef binary and sets $reef to it: release by default, the debug
# build with REEF_PROFILE=debug (CI, where the tests have just built it).
build_reef() {
  local profile=(--release) dir=release
  [ "${REEF_PROFILE:-release}" = debug ] && profile=() dir=debug
  cargo build --quiet "${profile[@]}" --bin reef
  reef=$PWD/target/$dir/reef
}
