"""The soak test's origin: a fixed set of objects with known SHA-256s, some fresh for an
hour and some expiring every few seconds (with validators, so proxies revalidate), and a
failure mode that switches on now and then.

GET /manifest answers {path: sha256} for every object. While failing, every request gets a
503 or has its connection cut (alternately). Each failure window is logged to stdout as
`fail START END` (Unix seconds), and the port as `port N`.
"""
import hashlib
import http.server
import json
import random
import sys
import threading
import time


def body(path, size):
    """Deterministic bytes for `path`: SHA-256 in counter mode."""
    out = bytearray()
    seed = path.encode()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(seed + block.to_bytes(8, "big")).digest() * 64
        block += 1
    return bytes(out[:size])


def objects(seed):
    rng = random.Random(seed)
    table = {}
    for i in range(200):
        table[f"/fresh/{i}"] = (rng.randint(500, 40_000), "public, max-age=3600")
    for i in range(100):
        table[f"/expiring/{i}"] = (rng.randint(500, 40_000), "public, max-age=3")
    for i in range(6):
        table[f"/large/{i}"] = (rng.randint(2 << 20, 6 << 20), "public, max-age=3600")
    for i in range(2):
        table[f"/large-expiring/{i}"] = (rng.randint(1 << 20, 3 << 20), "public, max-age=5")
    return {p: (body(p, n), cc) for p, (n, cc) in table.items()}


OBJECTS = objects(1)
MANIFEST = json.dumps(
    {p: hashlib.sha256(b).hexdigest() for p, (b, _) in OBJECTS.items()}
).encode()
LAST_MODIFIED = "Sat, 21 Nov 2026 00:00:00 GMT"
failing = threading.Event()
lock = threading.Lock()
stats = {"requests": 0, "bodies": 0, "body_bytes": 0, "not_modified": 0, "refused": 0}
cuts = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/manifest":
            return self.reply(200, MANIFEST, {"Cache-Control": "no-store"})
        if self.path == "/stats":
            return self.reply(200, json.dumps(stats).encode(), {"Cache-Control": "no-store"})
        with lock:
            stats["requests"] += 1
        if failing.is_set():
            with lock:
                stats["refused"] += 1
            cuts[0] += 1
            if cuts[0] % 2:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            return self.reply(503, b"origin failing\n", {"Cache-Control": "no-store"})
        entry = OBJECTS.get(self.path.split("?")[0])
        if entry is None:
            return self.reply(404, b"no such object\n", {"Cache-Control": "max-age=10"})
        data, cc = entry
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        headers = {"Cache-Control": cc, "ETag": etag, "Last-Modified": LAST_MODIFIED}
        if self.headers.get("If-None-Match") == etag:
            with lock:
                stats["not_modified"] += 1
            return self.reply(304, b"", headers)
        with lock:
            stats["bodies"] += 1
            stats["body_bytes"] += len(data)
        self.reply(200, data, headers)

    def reply(self, status, data, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 304:
            self.wfile.write(data)


def fail_now_and_then(after, every, length):
    """From `after` seconds on, fails for `length` seconds at a random moment in each
    `every`-second period."""
    rng = random.Random(7)
    time.sleep(after)
    while True:
        start = rng.uniform(0, every - length)
        time.sleep(start)
        begin = time.time()
        failing.set()
        time.sleep(length)
        failing.clear()
        print(f"fail {begin:.3f} {time.time():.3f}", flush=True)
        time.sleep(every - length - start)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"port {server.server_address[1]}", flush=True)
# argv: seconds before the first failure (the warm-up), then the period and the length.
after, every, length = (float(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (60, 45, 6)
threading.Thread(target=fail_now_and_then, args=(after, every, length), daemon=True).start()
server.serve_forever()
