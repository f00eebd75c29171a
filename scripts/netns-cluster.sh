#!/usr/bin/env bash
# Four hosts, each running a reef node in its own network namespace, and an origin on a
# fifth, on one machine. Needs root and iproute2 (installed from Debian if missing); creates
# its own namespaces, veth pairs and bridges, uses addresses only inside them, and removes
# everything when it exits.
#
# The network: every node host has two links, one to the "cluster" bridge where the nodes
# meet (10.77.1.0/24) and one to the "internet" bridge where the origin is (10.77.2.0/24).
# Cutting a host's cluster link (link down on the bridge side) partitions it from the other
# nodes while it can still reach the origin, as a region cut off from the others would.
#
# It checks, in order, and says how long each step took:
#  1. the four nodes find each other (routing tables and clusters);
#  2. an object fetched at one host is shared: the others get it from a peer, the origin
#     sees it once;
#  3. with host 4 cut off, hosts 1-3 keep serving and sharing, and host 4 serves from its
#     cache and from the origin;
#  4. after the link is repaired the overlay heals within HEAL_LIMIT seconds (default 60):
#     every node connected to the other three again, clusters back to their size, and
#     objects shared across the former cut;
#  5. a host with another network secret never joins, and the nodes count its failed
#     handshakes.
# Usage: scripts/netns-cluster.sh (as root; REEF_PROFILE=debug uses the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "netns-cluster.sh needs root (network namespaces)" >&2; exit 1; }
. scripts/lib.sh
need_packages ip:iproute2 curl:curl python3:python3
heal_limit=${HEAL_LIMIT:-60}
build_reef

# Short: interface names are at most 15 bytes ("r12345s4eth0").
tag=r$(($$ % 100000))
sw=${tag}sw
hosts=(1 2 3 4 5 6)
s=$(mktemp -d)
pids=()
cleanup() {
  local p h
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for h in "${hosts[@]}"; do
    ip netns del "${tag}h$h" 2>/dev/null || true
    # veth ends still in this namespace if setting up failed half-way
    ip link del "${tag}${h}eth0" 2>/dev/null || true
    ip link del "${tag}${h}eth1" 2>/dev/null || true
  done
  ip netns del "$sw" 2>/dev/null || true
  rm -rf "$s"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  local h
  for h in 1 2 3 4 6; do # what each node saw, to tell why
    [ -s "$s/node$h.json" ] || continue
    echo "  host $h: $(q "$h" "(s['peers_connected'], [(p['p2p'], p['heard_secs_ago']) for p in s['peers']], [c['members_known'] for c in s['clusters']])")" >&2
    # Which cluster each level is in, how large it thinks it is and the RTTs it measured,
    # after how long up: enough to tell clusters that never merged from tables never filled.
    echo "    up $(q "$h" "s['uptime_secs']") s; per level (cluster, size, median RTT ms): $(q "$h" "[(c['cluster'][:6], c['size_estimate'], c['median_rtt_ms']) for c in s['clusters']]")" >&2
  done
  [ -n "${REEF_NETNS_KEEP:-}" ] && { trap - EXIT; echo "left up: namespaces ${tag}*, files in $s" >&2; }
  exit 1
}
in_host() { local h=$1; shift; ip netns exec "${tag}h$h" "$@"; }
t0=$(date +%s.%N)
elapsed() { python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

# --- the network -------------------------------------------------------------------------
ip netns add "$sw"
ip -n "$sw" link add cluster type bridge
ip -n "$sw" link add internet type bridge
ip -n "$sw" link set cluster up
ip -n "$sw" link set internet up
# link HOST NAME BRIDGE ADDR: a veth pair from the host's NAME to the bridge.
link() {
  local h=$1 name=$2 bridge=$3 addr=$4
  ip link add "${tag}$h$name" type veth peer name "${tag}s$h$name"
  ip link set "${tag}$h$name" netns "${tag}h$h" name "$name"
  ip link set "${tag}s$h$name" netns "$sw"
  ip -n "$sw" link set "${tag}s$h$name" master "$bridge" up
  ip -n "${tag}h$h" addr add "$addr/24" dev "$name"
  ip -n "${tag}h$h" link set "$name" up
}
for h in "${hosts[@]}"; do
  ip netns add "${tag}h$h"
  ip -n "${tag}h$h" link set lo up
done
for h in 1 2 3 4 6; do
  link "$h" eth0 cluster "10.77.1.$h"
  link "$h" eth1 internet "10.77.2.$h"
done
link 5 eth1 internet 10.77.2.5
cut() { ip -n "$sw" link set "${tag}s4eth0" "$1"; }

# --- the origin on host 5 -----------------------------------------------------------------
mkdir -p "$s/www"
for f in a b c d e; do head -c 300000 /dev/urandom >"$s/www/$f.bin"; done
cat >"$s/origin.py" <<'PY'
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cache-Control", "max-age=3600")
        super().end_headers()
http.server.ThreadingHTTPServer(("10.77.2.5", 80), functools.partial(Handler, directory=sys.argv[1])).serve_forever()
PY
# (ip netns exec runs in the background itself, not through a function's subshell, so that
# $! is the server's own PID and cleanup stops it.)
ip netns exec "${tag}h5" python3 "$s/origin.py" "$s/www" >"$s/origin.log" 2>&1 &
pids+=($!)
origin_gets() { grep -c "\"GET $1 " "$s/origin.log" || true; }

# --- the nodes ----------------------------------------------------------------------------
"$reef" secret new --out "$s/secret" >/dev/null
"$reef" secret new --out "$s/other-secret" >/dev/null
start_node() { # HOST SECRET [BOOTSTRAP]
  local h=$1 secret=$2 boot=${3:-}
  ip netns exec "${tag}h$h" "$reef" node --secret-file "$secret" --data-dir "$s/data$h" \
    --p2p "/ip4/10.77.1.$h/tcp/4001" --http "10.77.1.$h:8080" --public-http "10.77.1.$h:8080" \
    --dns "10.77.1.$h:5353" --admin 127.0.0.1:9090 \
    --allow-private-origins --resolve origin.test=10.77.2.5 \
    ${boot:+--bootstrap "$boot"} >"$s/node$h.json" 2>"$s/node$h.log" &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$s/node$h.json" ] && return 0; sleep 0.05; done
  fail "node $h did not start: $(tail -3 "$s/node$h.log")"
}
status() { in_host "$1" curl -s --max-time 2 http://127.0.0.1:9090/status; }
# q HOST EXPR: evaluates a Python expression over the host's /status as `s`.
q() {
  status "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null || echo error
}
# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 0.5 s; prints the time it took.
wait_for() {
  local limit=$1 what=$2 start
  shift 2
  start=$(date +%s.%N)
  while ! "$@"; do
    python3 -c "import sys,time; sys.exit(time.time() - float(sys.argv[1]) > float(sys.argv[2]))" "$start" "$limit" ||
      fail "$what: not within ${limit}s"
    sleep 0.5
  done
  echo "  $what: $(elapsed "$start") s"
}
peer_id() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["peer_id"])' "$s/node$1.json"; }
# knows HOST OTHER: OTHER is in HOST's routing table, heard from within 20 s (pings go
# every 15 s on an open connection).
knows() {
  [ "$(q "$1" "any(p['peer'] == '$(peer_id "$2")' and (p['heard_secs_ago'] or 99) < 20 for p in s['peers'])")" = True ]
}
connected_to_all() { # HOST OTHER...: HOST has connections to and knows every OTHER
  local h=$1 o
  shift
  [ "$(q "$h" "s['peers_connected']")" -ge $# ] 2>/dev/null || return 1
  for o in "$@"; do knows "$h" "$o" || return 1; done
}
mesh() { # HOST...: every listed host connected to all the others
  local h o others
  for h in "$@"; do
    others=()
    for o in "$@"; do [ "$o" != "$h" ] && others+=("$o"); done
    connected_to_all "$h" "${others[@]}" || return 1
  done
}
# get HOST PATH: fetches through the host's own proxy; prints "STATUS CACHE-STATUS".
get() {
  in_host "$1" curl -s --max-time 10 -o "$s/body" -D "$s/head" -H "Host: origin.test.cdn" "http://10.77.1.$1:8080$2" || true
  cmp -s "$s/body" "$s/www${2}" || { echo "wrong-body"; return; }
  awk 'NR==1 {st=$2} tolower($1)=="cache-status:" {sub(/^[^:]*: */, ""); cs=$0} END {print st, cs}' "$s/head" | tr -d '\r'
}
expect() { # HOST PATH PATTERN
  local got
  got=$(get "$1" "$2")
  [[ "$got" =~ $3 ]] || fail "host $1 GET $2: '$got', wanted /$3/"
  echo "    host $1 GET $2: $got"
}

echo "1. four nodes on four hosts"
start_node 1 "$s/secret"
boot=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["p2p"])' "$s/node1.json")
for h in 2 3 4; do start_node "$h" "$s/secret" "$boot"; done
wait_for 60 "every node connected to the three others" mesh 1 2 3 4
clusters() { q "$1" "' '.join(str(c['members_known']) for c in s['clusters'])"; }
clustered() { # every host knows the three others at every level (sub-millisecond links)
  local h
  for h in 1 2 3 4; do
    [ "$(q "$h" "all(c['members_known'] >= 3 for c in s['clusters']) and len(s['clusters']) > 0")" = True ] || return 1
  done
}
wait_for 60 "clusters formed at every level" clustered
for h in 1 2 3 4; do echo "    host $h members known per level: $(clusters "$h")"; done

echo "2. an object is shared across hosts"
expect 1 /a.bin '^200 '
for h in 2 3 4; do expect "$h" /a.bin '^200 .*,'; done
[ "$(origin_gets /a.bin)" = 1 ] || fail "the origin served /a.bin $(origin_gets /a.bin) times"
echo "    the origin served /a.bin once"

echo "3. host 4 cut off from the cluster (link down)"
cut down
cut_at=$(date +%s.%N)
expect 1 /b.bin '^200 '
expect 2 /b.bin '^200 .*,'
expect 3 /b.bin '^200 .*,'
[ "$(origin_gets /b.bin)" = 1 ] || fail "the origin served /b.bin $(origin_gets /b.bin) times"
echo "    hosts 1-3 still share: the origin served /b.bin once"
expect 4 /a.bin '^200 .*hit'
expect 4 /c.bin '^200 .*fwd=miss'
echo "    host 4 serves its cache and the origin"
peers_of() { q "$1" "' '.join(p['peer'] for p in s['peers'])"; }
forgot() { # host 4 and the others dropped each other from their routing tables
  local h mine theirs
  theirs=$(peers_of 4)
  [ "$theirs" != error ] || return 1
  for h in 1 2 3; do
    mine=$(peers_of "$h")
    [ "$mine" != error ] || return 1
    [[ " $mine " == *" $(peer_id 4) "* ]] && return 1
    [[ " $theirs " == *" $(peer_id "$h") "* ]] && return 1
  done
  return 0
}
wait_for 180 "both sides of the cut drop each other from their routing tables" forgot
echo "    (the cut lasted $(elapsed "$cut_at") s)"

echo "4. the link repaired"
cut up
wait_for "$heal_limit" "overlay healed (every node connected to the three others)" mesh 1 2 3 4
wait_for "$heal_limit" "clusters back to their size" clustered
expect 4 /d.bin '^200 '
expect 1 /d.bin '^200 .*,'
echo "    objects shared across the former cut again"

echo "5. a host with another network secret"
start_node 6 "$s/other-secret" "$boot"
refused() { [ "$(q 1 "s['overlay']['handshake_failures']")" -gt 0 ] 2>/dev/null; }
wait_for 30 "host 1 counts the failed handshakes" refused
sleep 10
[ "$(q 6 "s['peers_connected']")" = 0 ] || fail "host 6 has connections: $(q 6 "s['peers_connected']")"
[ "$(q 6 "len(s['peers'])")" = 0 ] || fail "host 6 knows peers"
for h in 1 2 3 4; do
  known=$(peers_of "$h")
  [ "$known" != error ] || fail "no status from host $h"
  [[ " $known " == *" $(peer_id 6) "* ]] && fail "host $h knows host 6"
done
expect 6 /e.bin '^200 [^,]*$'
echo "    host 6 knows no one, no node knows it, and it serves only from the origin"
echo "PASS in $(elapsed "$t0") s"
