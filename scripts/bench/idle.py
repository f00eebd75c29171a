#!/usr/bin/env python3
"""Opens N idle keep-alive connections to HOST:PORT (each sends one request and keeps the
connection open), holds them for SECONDS, prints how many stayed open. Bounded in count and
time; used by bench-proxy.sh to measure a server's memory per idle connection."""
import resource, socket, sys, time

host, port, n, hold, hosthdr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
socks = []
req = f"GET /1k.bin HTTP/1.1\r\nHost: {hosthdr}\r\n\r\n".encode()
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(req)
    socks.append(s)
# Drain the responses so every connection is idle, not mid-request.
for s in socks:
    try:
        s.recv(65536)
    except OSError:
        pass
print(len(socks), flush=True)
time.sleep(hold)
alive = 0
for s in socks:
    try:
        s.setblocking(False)
        data = s.recv(1)
        alive += 1 if data != b"" else 0
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
    s.close()
print(alive, flush=True)
