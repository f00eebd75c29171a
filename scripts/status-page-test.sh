#!/usr/bin/env bash
# The status page in a real browser (issue "Operators and volunteers"): starts a node and a
# small origin on loopback, sends it some traffic and a purge, loads the admin page in
# headless Chromium, checks every number the page shows against /status, and saves a
# screenshot (OUT, default target/status-page.png). Installs chromium, curl and python3 from
# Debian if missing (needs root). Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_packages chromium:chromium curl:curl python3:python3
cargo build --bin reef >/dev/null 2>&1
out=${OUT:-target/status-page.png}
start_scratch
mkdir -p "$s/www/.well-known" "$s/www/img"
echo '<html><body><h1>hello</h1><img src="/img/a.png"></body></html>' >"$s/www/index.html"
head -c 20000 /dev/urandom >"$s/www/img/a.png"
target/debug/reef publisher keygen --out "$s/site.key" 2>/dev/null >"$s/www/.well-known/reef.json"
start_origin "$s/www"
target/debug/reef node --p2p /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0 --dns 127.0.0.1:0 \
  --admin 127.0.0.1:0 --allow-private-origins --resolve origin.test=127.0.0.1 \
  --run-for 300 >"$s/node.out" 2>"$s/node.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$s/node.out" ] && break; sleep 0.1; done
read -r http admin < <(python3 -c 'import json,sys; i=json.loads(open(sys.argv[1]).readline()); print(i["http"], i["admin"])' "$s/node.out")
host="origin.test.$port.cdn"
# Traffic in two 10-second intervals, so the chart has a line.
for round in 1 2 3; do
  for path in / /img/a.png /img/a.png /index.html /missing; do
    curl -s -o /dev/null -H "Host: $host" "http://$http$path"
  done
  [ "$round" -lt 3 ] && sleep 10
done
target/debug/reef purge "http://origin.test:$port/img/a.png" --key "$s/site.key" --node "$http" >/dev/null
sleep 1
curl -sf "http://$admin/status" >"$s/status.json"
timeout 120 chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=5000 \
  --dump-dom "http://$admin/" 2>/dev/null >"$s/page.html"
mkdir -p "$(dirname "$out")"
timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1700 \
  --virtual-time-budget=5000 --screenshot="$out" "http://$admin/" >/dev/null 2>&1
python3 - "$s/status.json" "$s/page.html" "$port" <<'PY'
import json, sys
from html.parser import HTMLParser

status = json.load(open(sys.argv[1]))
page = open(sys.argv[2]).read()
port = sys.argv[3]


class Fields(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields, self.loaded = [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body" and a.get("data-loaded") == "1":
            self.loaded = True
        if "data-k" in a:
            self.fields.append((a["data-k"], a.get("data-v"), "data-live" in a))


p = Fields()
p.feed(page)
assert p.loaded, "the page never rendered /status"
checked = 0
for key, shown, live in p.fields:
    value = status
    for part in key.split("."):
        value = value[part]
    if live:
        continue
    want = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    assert shown == want, f"{key}: the page shows {shown!r}, /status says {want!r}"
    checked += 1
assert status["cache"]["hits"] > 0 and status["cache"]["misses"] > 0, status["cache"]
assert status["cache"]["hit_bytes"] > 0, status["cache"]
assert "origin.test" in page, "the top sites table names the site"
assert f"http://origin.test:{port}/img/a.png" in page, "the purge is listed"
assert len(status["history"]) >= 2, status["history"]
points = page.split('id="chart"')[1].split(">")[0]
assert 'data-points="' in points and 'data-points="0"' not in points, points
print(f"status page: {checked} numbers match /status; sites, purges and the chart are shown")
PY
echo "screenshot: $out"
