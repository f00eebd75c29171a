#!/usr/bin/env bash
# reef's caching proxy against nginx (proxy_cache, one worker) on the same machine: each
# proxy pinned to core 0, wrk on core 1, the same origin (nginx serving static files).
# Both cache on disk as well as in memory (nginx's proxy_cache files, reef's --data-dir), and
# both send cached bodies from the page cache with sendfile (reef those of 16-768 KiB).
# Hits are also measured on a second server of the same nginx with sendfile off, which
# BENCHMARKING.md finds faster for small objects: the better nginx per size is the one to beat.
# Prints, for reef and nginx side by side (median of 3 runs of 10 s after a warm-up):
#   requests/s for cache hits of 1 KiB and 100 KiB at 50 connections, MB/s for a 10 MiB
#   object (each with the proxy's CPU per request, and how busy wrk's core was: at 100 %, wrk
#   is the limit and CPU per request is what compares the proxies), RSS per idle keep-alive connection (10,000 open, on freshly started processes,
#   median of RUNS rounds), and a crowd of 500 concurrent requests for one uncached URL whose
#   origin takes 1 s (origin fetches, p99), and how much each process's peak RSS grows while
#   a 200 MiB object goes through it (these two on the processes of the last idle round).
# Installs nginx, wrk and GNU time from Debian if missing (needs root). Binds 127.0.0.1 only and stops
# everything it started. Environment: RUNS (default 3), SECS (default 10), IDLE (10000).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3} secs=${SECS:-10} idle=${IDLE:-10000}
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --bin reef >/dev/null 2>&1
s=$(mktemp -d)
pid_origin='' pid_nginx='' pid_reef=''
# Only the live instances: earlier ones were stopped and waited for (see `restart`), and their
# PIDs may have been reused since.
cleanup() {
  for p in $pid_origin $pid_nginx $pid_reef; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$s"
}
trap cleanup EXIT
mkdir -p "$s"/{www,run,log,ram,tmp/origin,tmp/proxy}
head -c 1024 /dev/urandom >"$s/www/1k.bin"
head -c 102400 /dev/urandom >"$s/www/100k.bin"
head -c 10485760 /dev/urandom >"$s/www/10m.bin"
head -c $((200 << 20)) /dev/urandom >"$s/www/200m.bin"
p_origin=18081 p_slow=18082 p_nginx=18083 p_reef=18084 p_slow2=18085 p_nginx_nosf=18086
render() { sed -e "s|@SCRATCH@|$s|g" -e "s|@PORT_ORIGIN@|$p_origin|g" -e "s|@PORT_SLOW@|$p_slow|g" -e "s|@PORT_NGINX@|$p_nginx|g" -e "s|@PORT_NGINX_NOSENDFILE@|$p_nginx_nosf|g" "$1"; }
render scripts/bench/origin-nginx.conf >"$s/origin.conf"
render scripts/bench/proxy-nginx.conf >"$s/proxy.conf"
taskset -c 1 nginx -c "$s/origin.conf" -p "$s" >/dev/null 2>&1 &
pid_origin=$!
# Both proxies start through these, again for each idle-connection round (fresh processes).
start_nginx() {
  taskset -c 0 nginx -c "$s/proxy.conf" -p "$s" >/dev/null 2>&1 &
  pid_nginx=$!
}
start_reef() {
  TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/reef node --p2p /ip4/127.0.0.1/tcp/0 --admin 127.0.0.1:0 --dns 127.0.0.1:0 \
    --http "127.0.0.1:$p_reef" --client-rate 0 --max-connections 0 --max-connections-per-client 0 --allow-private-origins --resolve origin.test=127.0.0.1 \
    --data-dir "$s/reef-data" --cache-mem $((1 << 30)) --max-object $((300 << 20)) >>"$s/reef.log" 2>&1 &
  pid_reef=$!
}
# The nginx master forks its worker (and the cache manager and loader): measure the worker.
nginx_worker() {
  for _ in $(seq 50); do
    pid_nginx_worker=$(pgrep -P "$pid_nginx" -f 'worker process' | head -1) && return
    sleep 0.1
  done
  echo "nginx started no worker" >&2
  return 1
}
start_nginx
start_reef
sleep 1.5
host_reef="origin.test.$p_origin.cdn"
nginx_worker
# "nginx-nosf": the same nginx on its server with sendfile off.
url() {
  case $1 in
    reef) echo "http://127.0.0.1:$p_reef/$2" ;;
    nginx) echo "http://127.0.0.1:$p_nginx/$2" ;;
    *) echo "http://127.0.0.1:$p_nginx_nosf/$2" ;;
  esac
}
hdr() { [ "$1" = reef ] && echo "Host: $host_reef" || echo "Host: origin"; }
for who in reef nginx; do for f in 1k.bin 100k.bin 10m.bin; do
  curl -s -o /dev/null -H "$(hdr $who)" "$(url $who $f)"; curl -s -o /dev/null -H "$(hdr $who)" "$(url $who $f)"
done; done
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
# CPU seconds the proxy process has used (all threads).
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print ($12 + $13) / t}' "/proc/$1/stat"; }
proxy_pid() { [ "$1" = reef ] && echo "$pid_reef" || echo "$pid_nginx_worker"; }
measure() { # who file conns -> "req/s MB/s proxy-CPU-us-per-request wrk-CPU-%"
  local c0 c1
  c0=$(cpu_s "$(proxy_pid "$1")")
  # GNU time gives wrk's own CPU time: at 100 % of its core, wrk is the limit (BENCHMARKING.md).
  taskset -c 1 /usr/bin/time -f "%U %S %e" -o "$s/wrk.time" \
    wrk -t1 -c"$3" -d"${secs}s" -H "$(hdr "$1")" "$(url "$1" "$2")" 2>/dev/null >"$s/wrk.out"
  c1=$(cpu_s "$(proxy_pid "$1")")
  w=$(awk '{printf "%.0f", ($1 + $2) * 100 / $3}' "$s/wrk.time")
  awk -v c0="$c0" -v c1="$c1" -v w="$w" '/requests in/ {n=$1} /Requests\/sec/ {r=$2} /Transfer\/sec/ {t=$2; if (t ~ /GB/) t*=1024; else if (t ~ /KB/) t/=1024; else t+=0} END {printf "%.0f %.1f %.2f %s\n", r, t, (c1 - c0) * 1e6 / n, w}' "$s/wrk.out"
}
# Hits are measured on nginx with sendfile on and off (BENCHMARKING.md: off serves small
# hits faster, large ones slower); the better of the two is the one to beat.
printf '%-28s %14s %14s %14s\n' "case (median of $runs)" reef nginx "nginx, sf off"
for case in "1k.bin 50 req" "100k.bin 50 req" "10m.bin 4 mb"; do
  set -- $case
  line=$(printf '%-28s' "$1 hits, $2 conns ($3)")
  # Runs alternate between the two, so a drift in the machine's speed (these machines are
  # shared) weighs on both alike.
  for who in reef nginx nginx-nosf; do measure "$who" "$1" "$2" >/dev/null; done # warm-up
  for who in reef nginx nginx-nosf; do : >"$s/$who.vals"; done
  for _ in $(seq "$runs"); do
    for who in reef nginx nginx-nosf; do measure "$who" "$1" "$2" >>"$s/$who.vals"; done
  done
  cpu_line=$(printf '%-28s' "  proxy CPU us/request")
  wrk_line=$(printf '%-28s' "  wrk's core busy, %")
  for who in reef nginx nginx-nosf; do
    if [ "$3" = req ]; then v=$(awk '{print $1}' "$s/$who.vals" | median); else v=$(awk '{print $2}' "$s/$who.vals" | median); fi
    line="$line $(printf '%14s' "$v")"
    cpu_line="$cpu_line $(printf '%14s' "$(awk '{print $3}' "$s/$who.vals" | median)")"
    wrk_line="$wrk_line $(printf '%14s' "$(awk '{print $4}' "$s/$who.vals" | median)")"
  done
  echo "$line"
  # When wrk's core is the limit (it is at 100 KiB), requests/s tie; CPU per request
  # still tells the two proxies apart.
  echo "$cpu_line"
  echo "$wrk_line"
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Restarts a proxy so an idle-connection round starts from a fresh process: what the
# allocator kept from earlier rounds (or from the hit runs) would hide the cost, or add to it.
restart() {
  local pid=$pid_reef
  [ "$1" = nginx ] && pid=$pid_nginx
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$1" = reef ]; then start_reef; else start_nginx; nginx_worker; fi
  for _ in $(seq 50); do curl -s -o /dev/null -H "$(hdr "$1")" "$(url "$1" 1k.bin)" && break; sleep 0.1; done
  curl -s -o /dev/null -H "$(hdr "$1")" "$(url "$1" 1k.bin)"
}
line=$(printf '%-28s' "RSS/idle conn ($idle), bytes")
for who in reef nginx; do
  port=$p_reef
  [ "$who" = nginx ] && port=$p_nginx
  : >"$s/idle.vals"
  for _ in $(seq "$runs"); do
    restart "$who"
    pid=$pid_reef
    [ "$who" = nginx ] && pid=$pid_nginx_worker
    before=$(rss "$pid")
    python3 scripts/bench/idle.py 127.0.0.1 "$port" "$idle" 6 "$(hdr "$who" | cut -d' ' -f2)" >"$s/idle.out" &
    ipid=$!
    sleep 4
    during=$(rss "$pid")
    wait "$ipid" || true
    echo $(( (during - before) * 1024 / idle )) >>"$s/idle.vals"
  done
  line="$line $(printf '%14s' "$(median <"$s/idle.vals")")"
done
echo "$line"
# The crowd: 500 concurrent requests for one URL whose origin takes 1 s.
line=$(printf '%-28s' "500 misses, origin 1 s")
for who in reef nginx; do
  if [ "$who" = reef ]; then
    out=$(taskset -c 1 python3 scripts/bench/crowd.py 127.0.0.1 "$p_reef" "origin.test.$p_slow2.cdn" "$p_slow2" 500 1.0)
  else
    out=$(taskset -c 1 python3 scripts/bench/crowd.py 127.0.0.1 "$p_nginx" "origin" "$p_slow" 500 1.0)
  fi
  set -- $out
  line="$line $(printf '%14s' "$1 fetch, p99 ${4}s")"
done
echo "$line"
# An object larger than a body's share of memory (reef: --spill-above, 16 MiB by default):
# how much the peak RSS grows while it goes through, a miss then a hit.
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
line=$(printf '%-28s' "200 MiB miss+hit, peak +MiB")
for who in reef nginx; do
  pid=$pid_reef
  [ "$who" = nginx ] && pid=$pid_nginx_worker
  before=$(hwm "$pid")
  for _ in 1 2; do curl -s -o /dev/null -H "$(hdr "$who")" "$(url "$who" 200m.bin)"; done
  line="$line $(printf '%14s' $(( ($(hwm "$pid") - before) / 1024 )))"
done
echo "$line"
echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2); reef: $(target/release/reef --version)"
