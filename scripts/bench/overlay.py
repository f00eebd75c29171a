"""Drives reef nodes for scripts/bench-overlay.sh: REEF ORIGIN_PORT SCRATCH RUNS NODES LOCATES."""
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request

reef, port, scratch, runs, nodes_n, locates = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:7])
random.seed(7)
host = f"origin.test.{port}.cdn"
started = []


def start(*extra):
    args = [reef, "node", "--p2p", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0",
            "--admin", "127.0.0.1:0", "--allow-private-origins", "--resolve", "origin.test=127.0.0.1",
            "--max-object", str(200 << 20), "--cache-mem", str(1 << 30), *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin"})
    info = json.loads(p.stdout.readline())
    started.append(p)
    return p, info


def status(info):
    with urllib.request.urlopen(f"http://{info['admin']}/status", timeout=10) as r:
        return json.load(r)


def wait_peers(info, n, within=30):
    deadline = time.time() + within
    while len(status(info)["peers"]) < n:
        if time.time() > deadline:
            raise SystemExit(f"node {info['peer_id']} knows fewer than {n} peers")
        time.sleep(0.1)


def fetch(info, path):
    """curl through a node: (seconds, bytes, cache-status)."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "-w", "##%{time_total} %{size_download} %{http_code}",
                          "-H", f"Host: {host}", f"http://{info['http']}{path}"],
                         capture_output=True, text=True, check=True).stdout
    head, _, tail = out.rpartition("##")
    t, size, code = tail.split()
    if code != "200":
        raise SystemExit(f"{path} via {info['http']}: HTTP {code}\n{head}")
    cs = next((l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("cache-status")), "")
    return float(t), int(size), cs


def cpu_ms(*procs):
    """CPU time (user + system) of the processes so far, in ms."""
    total = 0
    for p in procs:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def rss_kib(p):
    with open(f"/proc/{p.pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))


try:
    # 1. Peer transfer vs origin fetch, side by side on the same object.
    a, ia = start()
    b, ib = start("--bootstrap", ia["p2p"])
    wait_peers(ib, 1)
    origin_mbs, peer_mbs, origin_cpu, peer_cpu = [], [], [], []
    for run in range(runs):
        path = f"/100m.bin?run={run}"
        c0 = cpu_ms(a)
        t_origin, n1, _ = fetch(ia, path)
        origin_cpu.append(cpu_ms(a) - c0)
        time.sleep(0.5)  # let the announcement land
        c0 = cpu_ms(a, b)
        t_peer, n2, cs = fetch(ib, path)
        peer_cpu.append(cpu_ms(a, b) - c0)
        assert n1 == n2 == 100 << 20 and "peer" in cs, (n1, n2, cs)
        origin_mbs.append(n1 / t_origin / 1e6)
        peer_mbs.append(n2 / t_peer / 1e6)
    mo, mp = statistics.median(origin_mbs), statistics.median(peer_mbs)
    co, cp = statistics.median(origin_cpu), statistics.median(peer_cpu)
    print(f"100 MiB object, median of {runs} (CPU: the reef nodes', both for a peer transfer, until the client has the last byte):")
    print(f"  reef from a local origin (nginx)  {mo:8.0f} MB/s  {co:5.0f} ms CPU   runs: {' '.join(f'{x:.0f}' for x in origin_mbs)}")
    print(f"  reef from a peer (libp2p stream)  {mp:8.0f} MB/s  {cp:5.0f} ms CPU   runs: {' '.join(f'{x:.0f}' for x in peer_mbs)}")
    print(f"  ratio peer / origin               {mp / mo:8.2f}   (goal >= 0.8)")
    idle_node, idle_info = start()
    time.sleep(10)
    idle_rss = rss_kib(idle_node)
    for p in started:
        p.terminate()
    for p in started:
        p.wait()
    started.clear()

    # 2. Locate latency on a NODES-node network.
    first, i0 = start()
    infos = [i0] + [start("--bootstrap", i0["p2p"])[1] for _ in range(nodes_n - 1)]
    for info in infos:
        wait_peers(info, 1)
    wait_peers(i0, min(nodes_n - 1, 20))
    time.sleep(2)
    holder = {}
    for i in range(1, 65):
        holder[i] = random.choice(infos)
        fetch(holder[i], f"/small{i}.bin")
    time.sleep(1)

    def locate(info, key):
        req = urllib.request.Request(f"http://{info['admin']}/locate", data=key.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            got = json.load(r)
        return got["micros"] / 1000, len(got["holders"])

    held, missing, found = [], [], 0
    for n in range(locates):
        i = random.randint(1, 64)
        # Ask a node other than the one holding it: a lookup never returns the asker's own copy.
        asker = random.choice([x for x in infos if x is not holder[i]])
        ms, holders = locate(asker, f"http://origin.test:{port}/small{i}.bin")
        held.append(ms)
        found += holders > 0
        ms, _ = locate(random.choice(infos), f"http://origin.test:{port}/nobody-has-{n}")
        missing.append(ms)

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    print(f"locate on {nodes_n} nodes, {locates} lookups each (timed inside the node):")
    print(f"  URL held by some node   p50 {q(held, .5):6.2f} ms   p99 {q(held, .99):6.2f} ms   (found a holder {found}/{locates})")
    print(f"  URL held by no node     p50 {q(missing, .5):6.2f} ms   p99 {q(missing, .99):6.2f} ms")
    net_rss = statistics.median(rss_kib(p) for p in started)
    print("memory (VmRSS):")
    print(f"  idle node, alone, after 10 s       {idle_rss / 1024:6.1f} MiB")
    print(f"  node of the {nodes_n}-node network (median) {net_rss / 1024:6.1f} MiB")
finally:
    for p in started:
        p.terminate()
    for p in started:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
