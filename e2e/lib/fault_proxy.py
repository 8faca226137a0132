#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a registry, for e2e/suites/release.sh
(a test tool, not a product).

    fault_proxy.py --upstream 127.0.0.1:5000 --port-file F --log L [--faults on|off]

Forwards every request to --upstream (Host kept, so the registry's upload
Locations point back at the proxy) and relays the answer. With --faults on,
requests of some kinds fail at fixed occurrences (counted per kind, from 1),
so that a run hits every fault deterministically:

  HEAD manifests   #1 503 + Retry-After: 1   #3 slow: held 4 s before forwarding
  HEAD blobs       #2, #7 503                #5 reset (RST, no answer)
  POST uploads     #2 429 + Retry-After: 1
  POST mounts      #1 502
  PUT blob uploads #1 half the body read, then reset
                   #3 forwarded whole (the registry completes it), then reset
  PUT manifests    #1 500                    #2 slow: held 1 s

Every injected fault is logged to --log as `FAULT KIND METHOD PATH`, every
forwarded request as `PASS METHOD PATH STATUS REQUEST_BODY_BYTES`. The port it listens on is
written to --port-file once it listens.
"""

import argparse
import http.client
import os
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RULES = [
    ("HEAD", re.compile(r"^/v2/.+/manifests/"), "head-manifest",
     {1: ("status", 503, {"Retry-After": "1"}), 3: ("slow", 4.0)}),
    ("HEAD", re.compile(r"^/v2/.+/blobs/sha256:"), "head-blob",
     {2: ("status", 503, {}), 5: ("reset",), 7: ("status", 503, {})}),
    ("POST", re.compile(r"^/v2/.+/blobs/uploads/\?(?!.*mount=)|^/v2/.+/blobs/uploads/$"), "post-upload",
     {2: ("status", 429, {"Retry-After": "1"})}),
    ("POST", re.compile(r"^/v2/.+/blobs/uploads/\?.*mount="), "post-mount",
     {1: ("status", 502, {})}),
    ("PUT", re.compile(r"^/v2/.+/blobs/uploads/.*digest="), "put-blob",
     {1: ("half-reset",), 3: ("forward-reset",)}),
    ("PUT", re.compile(r"^/v2/.+/manifests/"), "put-manifest",
     {1: ("status", 500, {}), 2: ("slow", 1.0)}),
]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--faults", default="on", choices=["on", "off"])
    args = ap.parse_args()
    lock = threading.Lock()
    counts = {}
    log = open(args.log, "a", buffering=1)
    up_host, up_port = args.upstream.rsplit(":", 1)

    def note(line):
        with lock:
            log.write(line + "\n")

    def fault_for(method, path):
        if args.faults != "on":
            return None
        for m, pattern, kind, plan in RULES:
            if m == method and pattern.search(path):
                with lock:
                    counts[kind] = counts.get(kind, 0) + 1
                    n = counts[kind]
                return kind, plan.get(n)
        return None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reset(self):
            # SO_LINGER 0: close sends RST, as a dropped connection does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def body_length(self):
            return int(self.headers.get("Content-Length") or 0)

        def read_chunked(self):
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()

        def answer(self, status, headers, body=b""):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def forward(self, body):
            conn = http.client.HTTPConnection(up_host, int(up_port), timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            # A HEAD answer keeps the upstream Content-Length (of the body it
            # does not send); any other gets the length of what is relayed.
            drop = ("connection", "transfer-encoding") + (() if self.command == "HEAD" else ("content-length",))
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in drop], data

        def handle_any(self):
            found = fault_for(self.command, self.path)
            kind, fault = found if found else (None, None)
            length = self.body_length()
            if fault and fault[0] == "half-reset":
                self.rfile.read(length // 2)
                note(f"FAULT reset-mid-upload {self.command} {self.path}")
                self.reset()
                return
            if fault and fault[0] == "reset":
                note(f"FAULT reset {self.command} {self.path}")
                self.reset()
                return
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self.read_chunked()
                del self.headers["Transfer-Encoding"]
                self.headers["Content-Length"] = str(len(body))
            else:
                body = self.rfile.read(length) if length else None
            if fault and fault[0] == "status":
                note(f"FAULT {fault[1]} {self.command} {self.path}")
                msg = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by fault_proxy"}]}'
                self.answer(fault[1], dict(fault[2], **{"Content-Type": "application/json"}), msg)
                return
            if fault and fault[0] == "slow":
                note(f"FAULT slow-{fault[1]:g}s {self.command} {self.path}")
                time.sleep(fault[1])
            status, headers, data = self.forward(body)
            if fault and fault[0] == "forward-reset":
                note(f"FAULT reset-after-upstream-{status} {self.command} {self.path}")
                self.reset()
                return
            note(f"PASS {self.command} {self.path} {status} {len(body or b'')}")
            try:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a slow answer past its deadline).
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    server = Server(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
