#!/usr/bin/env python3
"""Blob GET load generator that measures the server, not the client.

wrk copies every body byte into user space, and on a 2-core machine that copy competes with
the server for the same cores. Here each connection reads the response headers normally and
then drains the body with recv(MSG_TRUNC), which the kernel discards without copying, so
the client costs little and the same client is used against every server.

    blobget.py URL SECONDS [CONNECTIONS]      (URL: http://host:port/v2/<name>/blobs/<digest>)
Prints: bytes, seconds, GB/s, requests, client CPU seconds.
"""
import socket
import sys
import threading
import time
import resource
from urllib.parse import urlsplit


def worker(host, port, path, deadline, out, idx):
    s = socket.create_connection((host, port))
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    buf = bytearray(1 << 22)
    total = reqs = 0
    while time.monotonic() < deadline:
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            peek = s.recv(65536, socket.MSG_PEEK)
            if not peek:
                raise SystemExit("connection closed in the headers")
            end = peek.find(b"\r\n\r\n")
            take = end + 4 if end >= 0 else len(peek)
            head += s.recv(take)
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise SystemExit(f"unexpected status: {status!r}")
        length = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if length is None:
            raise SystemExit("no Content-Length")
        left = length
        while left:
            n = s.recv_into(buf, min(left, len(buf)), socket.MSG_TRUNC)
            if n == 0:
                raise SystemExit("connection closed in the body")
            left -= n
        total += length
        reqs += 1
    out[idx] = (total, reqs)
    s.close()


def main():
    url, secs = sys.argv[1], float(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    u = urlsplit(url)
    start = time.monotonic()
    deadline = start + secs
    out = [None] * conns
    threads = [
        threading.Thread(target=worker, args=(u.hostname, u.port, u.path, deadline, out, i))
        for i in range(conns)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if any(o is None for o in out):
        raise SystemExit("a connection failed")
    total = sum(o[0] for o in out)
    reqs = sum(o[1] for o in out)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{total} bytes in {elapsed:.2f} s = {total / elapsed / 1e9:.2f} GB/s, "
          f"{reqs} requests, client CPU {ru.ru_utime + ru.ru_stime:.2f} s")


if __name__ == "__main__":
    main()
