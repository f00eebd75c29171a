"""Judges a soak run from its files: the load generator's failures, the script's node
down/up events, the origin's failure windows and the RSS samples. Prints the figures and
exits non-zero unless every point of the pass rule holds:
- zero wrong bodies;
- failures only at a node while it is down (from its kill until it is serving again, plus a
  second), never at the others;
- every surviving node's RSS within 10 % of its level after the first minute.
"""
import json
import sys
from collections import Counter, defaultdict

scratch, start, survivors = sys.argv[1], float(sys.argv[2]), [int(n) for n in sys.argv[3].split(",")]
lines = open(f"{scratch}/load.out").read().strip().splitlines()
try:
    summary = json.loads(lines[-1])
except (IndexError, ValueError):
    print("soak: the load generator printed no summary:\n" + "\n".join(lines[-20:]))
    print("FAIL")
    sys.exit(1)

down = defaultdict(list)  # node -> [(from, to)]
pending = {}
for line in open(f"{scratch}/events"):
    what, t, node = line.split()
    if what == "down":
        pending[int(node)] = float(t)
    else:
        down[int(node)].append((pending.pop(int(node)), float(t)))
for node, t in pending.items():
    down[node].append((t, float("inf")))
failing = [tuple(map(float, l.split()[1:])) for l in open(f"{scratch}/origin.out") if l.startswith("fail ")]

expected, unexpected = Counter(), []
for line in open(f"{scratch}/errors.jsonl"):
    e = json.loads(line)
    if e["kind"] == "wrong body":
        continue
    if any(a - 0.5 <= e["t"] <= b + 1.0 for a, b in down[e["node"]]):
        expected[e["kind"]] += 1
    else:
        e["origin_failing"] = any(a - 1 <= e["t"] <= b + 1 for a, b in failing)
        e["at"] = round(e["t"] - start, 1)
        unexpected.append(e)

rss = defaultdict(list)  # node -> [(t, kB)]
for line in open(f"{scratch}/rss"):
    t, node, kb = line.split()
    rss[int(node)].append((float(t) - start, int(kb)))

minutes = (max(t for n in rss for t, _ in rss[n]) if rss else 0) / 60
print(f"soak: {minutes:.1f} min, {summary['requests']} requests, {summary['ok']} good bodies "
      f"({summary['bytes'] / 2**20:.0f} MiB checked), {summary['wrong']} wrong bodies")
o = summary["origin"]
print(f"  origin: {o['requests']} requests ({o['bodies']} bodies, {o['body_bytes'] / 2**20:.0f} MiB; "
      f"{o['not_modified']} not modified; {o['refused']} failed on purpose)")
print("  served: " + ", ".join(f"{k} {v}" for k, v in list(summary["served"].items())[:8]))
print(f"  node restarts: {sum(len(v) for v in down.values())}; origin failure windows: {len(failing)}")
print(f"  failures at a node while it was down (expected): {sum(expected.values())} {dict(expected)}")
print(f"  failures anywhere else: {len(unexpected)}")
for e in unexpected[:20]:
    print(f"    t={e['at']}s node {e['node']} {e['kind']} {e['path']} "
          f"origin failing: {e['origin_failing']} ({e['detail'][:120]})")
ok = summary["wrong"] == 0 and not unexpected and summary["ok"] > 0
for node in survivors:
    after = [(t, kb) for t, kb in rss[node] if t >= 60]
    if not after:
        print(f"  node {node}: no RSS sample after the first minute")
        ok = False
        continue
    ref = after[0][1]
    top = max(kb for _, kb in after)
    last = after[-1][1]
    within = top <= ref * 1.10
    ok &= within
    print(f"  node {node} RSS: {ref / 1024:.1f} MiB at 1 min, max {top / 1024:.1f}, "
          f"end {last / 1024:.1f} ({(top / ref - 1) * 100:+.1f} % at most): {'ok' if within else 'GROWS'}")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
