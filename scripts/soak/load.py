"""The soak test's load generator: threads pinned to each node fetch a mix of objects
(small and large, fresh and expiring) and check every body against the origin's SHA-256.

Writes every failure as a JSON line to --errors (time, node index, what happened) and a
summary to stdout at the end. Classifying failures against node down-times happens in
report.py, once the run is over.
"""
import argparse
import hashlib
import http.client
import json
import random
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--origin", required=True, help="host:port of the origin")
ap.add_argument("--node", action="append", required=True, help="host:port of a proxy")
ap.add_argument("--host", required=True, help="the CDN name of the origin")
ap.add_argument("--seconds", type=float, required=True)
ap.add_argument("--threads-per-node", type=int, default=3)
ap.add_argument("--pause", type=float, default=0.01, help="seconds between requests")
ap.add_argument("--errors", required=True)
args = ap.parse_args()

conn = http.client.HTTPConnection(args.origin, timeout=10)
conn.request("GET", "/manifest")
MANIFEST = json.loads(conn.getresponse().read())
PATHS = sorted(MANIFEST)
# The mix: most requests for small fresh objects, a quarter for expiring ones, a few large.
WEIGHTS = [
    6 if p.startswith("/fresh/") else
    3 if p.startswith("/expiring/") else
    2 if p.startswith("/large/") else 1
    for p in PATHS
]

lock = threading.Lock()
counts = {"requests": 0, "ok": 0, "bytes": 0, "wrong": 0, "failed": 0}
# How the good answers were served: this node's Cache-Status entry (without its name and
# details), prefixed with "peer: " when another node's entry comes first.
served = {}


def how(cache_status):
    entries = [e.strip() for e in cache_status.split(",") if e.strip()]
    if not entries:
        return "none"
    params = [p.strip() for p in entries[-1].split(";")[1:] if not p.strip().startswith("detail=")]
    return ("peer: " if len(entries) > 1 else "") + ("; ".join(params) or "?")
errors = open(args.errors, "w")


def record(node, kind, path, detail):
    with lock:
        counts["wrong" if kind == "wrong body" else "failed"] += 1
        errors.write(json.dumps({"t": time.time(), "node": node, "kind": kind,
                                 "path": path, "detail": detail}) + "\n")
        errors.flush()


def worker(node, addr, seed, deadline):
    rng = random.Random(seed)
    c = None
    while time.time() < deadline:
        path = rng.choices(PATHS, WEIGHTS)[0]
        try:
            if c is None:
                c = http.client.HTTPConnection(addr, timeout=30)
            c.request("GET", path, headers={"Host": args.host})
            r = c.getresponse()
            data = r.read()
            with lock:
                counts["requests"] += 1
            if r.status != 200:
                record(node, f"status {r.status}", path, r.getheader("Cache-Status", ""))
                c.close()
                c = None
                time.sleep(0.2)
            elif hashlib.sha256(data).hexdigest() != MANIFEST[path]:
                record(node, "wrong body", path,
                       f"{len(data)} bytes; cache-status {r.getheader('Cache-Status', '')}")
            else:
                kind = how(r.getheader("Cache-Status", ""))
                with lock:
                    counts["ok"] += 1
                    counts["bytes"] += len(data)
                    served[kind] = served.get(kind, 0) + 1
        except (OSError, http.client.HTTPException) as e:
            with lock:
                counts["requests"] += 1
            record(node, type(e).__name__, path, str(e))
            if c is not None:
                c.close()
            c = None
            time.sleep(0.2)
        time.sleep(args.pause)


deadline = time.time() + args.seconds
threads = [
    threading.Thread(target=worker, args=(i + 1, addr, 1000 * i + t, deadline))
    for i, addr in enumerate(args.node)
    for t in range(args.threads_per_node)
]
for t in threads:
    t.start()
for t in threads:
    t.join()
errors.close()
conn = http.client.HTTPConnection(args.origin, timeout=10)
conn.request("GET", "/stats")
counts["origin"] = json.loads(conn.getresponse().read())
counts["served"] = dict(sorted(served.items(), key=lambda kv: -kv[1]))
print(json.dumps(counts))
