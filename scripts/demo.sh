#!/usr/bin/env bash
# reef in two minutes, on this machine only: a small origin site, five nodes with their
# nameservers, and what happens to a request, step by step. Runs without input and stops
# everything it started; `scripts/demo.sh --keep` leaves the network up to explore until
# Ctrl-C. Installs curl, dig (dnsutils) and python3 from Debian if missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=no
[ "${1:-}" = "--keep" ] && keep=yes
. scripts/lib.sh
need_packages curl:curl dig:dnsutils python3:python3
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { printf '  $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }
echo "building reef (release)..."
cargo build --release --bin reef >/dev/null 2>&1
reef=target/release/reef
start_scratch

# The origin: an HTML page with two images.
mkdir -p "$s/www/img"
cat >"$s/www/index.html" <<'HTML'
<!doctype html><title>A small site</title>
<h1>Hello from the origin</h1><img src="/img/reef.png"><img src="/img/fish.png">
HTML
head -c 150000 /dev/urandom >"$s/www/img/reef.png"
head -c 80000 /dev/urandom >"$s/www/img/fish.png"
start_origin "$s/www" # like most sites, it says how long its files may be cached
origin_requests() { grep -c "\"GET $1 " "$s/origin.log" || true; }

# Five nodes, each with its proxy on its own loopback address (127.0.0.11 ... 127.0.0.15),
# joined through the first one.
start() {
  local i=$1; shift
  "$reef" node --p2p /ip4/127.0.0.1/tcp/0 --http "127.0.0.1$i:0" --dns "127.0.0.1$i:0" \
    --admin "127.0.0.1$i:0" --allow-private-origins --resolve origin.test=127.0.0.1 "$@" \
    >"$s/node$i.json" 2>"$s/node$i.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$s/node$i.json" ] && break; sleep 0.1; done
}
field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$s/node$1.json" "$2"; }
start 1
for i in 2 3 4 5; do start "$i" --bootstrap "$(field 1 p2p)"; done
for i in 1 2 3 4 5; do
  for _ in $(seq 100); do
    n=$(curl -s "http://$(field "$i" admin)/status" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))' 2>/dev/null || echo 0)
    [ "$n" -ge 1 ] && break
    sleep 0.1
  done
done
sleep 2

say "1. A publisher's site is at http://origin.test:$port/ (a local stand-in for www.example.com)."
echo "   To put it on the CDN, they only rewrite the host name:"
run "$reef" url "http://origin.test:$port/index.html"
cdn_host="origin.test.$port.cdn"

dns1=$(field 1 dns)
say "2. A browser asks DNS for that name. Every node is a nameserver; it answers with live proxies near the client:"
run dig +noall +answer @"${dns1%:*}" -p "${dns1##*:}" "$cdn_host" A

http1=$(field 1 http); http2=$(field 2 http); http3=$(field 3 http)
say "3. The first request, at node 1: nobody has the page yet, so node 1 fetches it from the origin."
run curl -s -o /dev/null -D - -H "Host: $cdn_host" "http://$http1/img/reef.png" \
  -w '    (%{size_download} bytes)\n'
sleep 1
say "4. The same image at node 2 and node 3: they find node 1 in the DHT and fetch it from a peer, not the origin."
echo "   (Cache-Status lists the peer's entry, then this node's, which names the peer.)"
for h in "$http2" "$http3"; do
  curl -s -o /dev/null -D - -H "Host: $cdn_host" "http://$h/img/reef.png" | grep -i '^cache-status' | sed 's/^/    /'
done
say "5. Asked again, node 2 answers from its own cache:"
curl -s -o /dev/null -D - -H "Host: $cdn_host" "http://$http2/img/reef.png" | grep -i '^cache-status' | sed 's/^/    /'
say "6. A crowd: 50 requests for the page and its images, spread over all five nodes..."
https=()
for i in 1 2 3 4 5; do https+=("$(field "$i" http)"); done
for n in $(seq 50); do
  h=${https[$((n % 5))]}
  crowd=()
  for path in /index.html /img/reef.png /img/fish.png; do
    curl -s -o /dev/null -H "Host: $cdn_host" "http://$h$path" &
    crowd+=($!)
  done
  wait "${crowd[@]}"
done
echo "   ...and what the origin saw:"
for path in /index.html /img/reef.png /img/fish.png; do
  printf '    %-16s %s request(s) reached the origin\n' "$path" "$(origin_requests "$path")"
done
admin1=$(field 1 admin)
say "7. Each node's status page shows its clusters, peers, cache and where its bytes came from:"
for i in 1 2 3 4 5; do echo "    node $i: http://$(field "$i" admin)/"; done
echo "   and for a terminal:"
run "$reef" status --admin "$admin1"
if [ "$keep" = yes ]; then
  say "The network stays up; try the commands above. Ctrl-C stops everything."
  trap 'exit 0' INT
  while true; do sleep 3600; done
fi
say "Done: everything the demo started is stopped. (scripts/demo.sh --keep leaves it running.)"
