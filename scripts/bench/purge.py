"""Drives reef nodes for scripts/bench-purge.sh: REEF ORIGIN_PORT SCRATCH RUNS NODES."""
import json
import statistics
import subprocess
import sys
import time
import urllib.request

reef, port, scratch, runs, nodes_n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
host = f"origin.test.{port}.cdn"
started = []


def start(*extra):
    args = [reef, "node", "--p2p", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0",
            "--admin", "127.0.0.1:0", "--allow-private-origins", "--resolve", "origin.test=127.0.0.1",
            # one client (this script) fetches through every node many times
            "--client-rate", "0", *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin"})
    info = json.loads(p.stdout.readline())
    started.append(p)
    return info


def status(info):
    with urllib.request.urlopen(f"http://{info['admin']}/status", timeout=10) as r:
        return json.load(r)


def fetch(info, path):
    req = urllib.request.Request(f"http://{info['http']}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return r.headers.get("cache-status", "")


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


try:
    first = start()
    infos = [first] + [start("--bootstrap", first["p2p"]) for _ in range(nodes_n - 1)]
    deadline = time.time() + 30
    while min(len(status(i)["peers"]) for i in infos) < 1:
        if time.time() > deadline:
            raise SystemExit("the network did not form")
        time.sleep(0.2)
    time.sleep(3)  # let the gossip meshes form
    spread, per_node = [], []
    for run in range(runs):
        path = f"/obj{run}.bin"
        for info in infos:
            fetch(info, path)
        for i, info in enumerate(infos):
            assert "hit" in fetch(info, path).rsplit(", ", 1)[-1], f"node {i} does not hold {path}"
        sender = infos[run % nodes_n]
        out = subprocess.run([reef, "purge", f"http://origin.test:{port}{path}", "--key", f"{scratch}/site.key",
                              "--node", sender["http"]], capture_output=True, text=True, check=True).stdout
        nonce = json.loads(out)["nonce"]
        times = []
        for i, info in enumerate(infos):
            wait_until = time.time() + 10
            while True:
                rec = next((r for r in status(info)["purges"]["recent"] if r["nonce"] == nonce), None)
                if rec is not None:
                    assert rec["removed"] == 1, (i, rec)
                    times.append((rec["source"], rec["accepted_unix_ms"]))
                    break
                if time.time() > wait_until:
                    raise SystemExit(f"node {i} never applied purge {run}")
                time.sleep(0.05)
        t0 = next(t for src, t in times if src == "client")
        delays = [t - t0 for src, t in times if src == "overlay"]
        spread.append(max(delays))
        per_node.extend(delays)
    print(f"purge propagation on {nodes_n} nodes, {runs} purges (acceptance at the node sent the purge")
    print(f"to removal at the last node; nodes' own clocks, one machine):")
    print(f"  first to last node   p50 {statistics.median(spread):5.1f} ms   max {max(spread):5.1f} ms   (goal p50 < 100 ms)")
    print(f"  first to each node   p50 {q(per_node, .5):5.1f} ms   p99 {q(per_node, .99):5.1f} ms")
    print(f"  per purge (ms): {' '.join(str(x) for x in spread)}")
finally:
    for p in started:
        p.terminate()
    for p in started:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
