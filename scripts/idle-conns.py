#!/usr/bin/env python3
"""Memory per idle keep-alive connection on the redirect path.

Opens N connections to a running node, sends one share-link request on each,
reads each 302, leaves them all open and idle, and reports the node's resident
memory before and after (VmRSS from /proc/PID/status).

usage: scripts/idle-conns.py URL PID [N]   (URL a share link on the node, PID the node's process;
                                            N defaults to 8000 and must fit the open-files limit)
"""
import resource
import socket
import sys
import time
from urllib.parse import urlsplit


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    url, pid = urlsplit(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + 16 > hard:
        raise SystemExit(f"{n} connections need more than the open-files limit ({hard})")
    req = (f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
           "User-Agent: Mozilla/5.0 (iPhone) Mobile\r\n\r\n").encode()
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        s = socket.create_connection((url.hostname, url.port or 80))
        s.sendall(req)
        conns.append(s)
    for s in conns:
        head = s.recv(4096)
        if not head.startswith(b"HTTP/1.1 302"):
            raise SystemExit(f"expected a 302, got {head[:60]!r}")
    time.sleep(2)
    after = rss_kib(pid)
    print(f"{n} idle keep-alive connections: RSS {before} -> {after} KiB, "
          f"{(after - before) / n:.2f} KiB per connection")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
