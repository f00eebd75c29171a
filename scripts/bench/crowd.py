#!/usr/bin/env python3
"""A slow origin and a crowd: serves one URL that takes DELAY seconds (counting its fetches),
sends N concurrent requests for it through a proxy, prints how many reached the origin and
the clients' p50/p99 latency. Usage: crowd.py PROXY_HOST PROXY_PORT HOST_HEADER ORIGIN_PORT N DELAY"""
import http.server, socketserver, sys, threading, time, socket

phost, pport, hosthdr, oport, n, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
count = 0
lock = threading.Lock()

class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global count
        if self.path != "/slow/object":
            # reef asks for the site's /.well-known/reef.json beside the first object: not a
            # fetch of the object, so not counted (nginx asks for nothing else).
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with lock:
            count += 1
        time.sleep(delay)
        body = b"x" * 1024
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024

srv = Server(("127.0.0.1", oport), Slow)
threading.Thread(target=srv.serve_forever, daemon=True).start()
lat = []
def one():
    t0 = time.time()
    s = socket.create_connection((phost, pport), timeout=30)
    s.sendall(f"GET /slow/object HTTP/1.1\r\nHost: {hosthdr}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if data.startswith(b"HTTP/1.1 200"):
        with lock:
            lat.append(time.time() - t0)
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
print(f"{count} {len(lat)} {p(0.5):.3f} {p(0.99):.3f}")
srv.shutdown()
