#!/usr/bin/env python3
"""A hostile registry for e2e/suites/hostile.sh (a test tool, not a product).

Listeners (ports in --ports-file, one `NAME PORT` a line, once all listen):
  main     http://127.0.0.1       Bearer, realm http://127.0.0.1:MAIN/token (Basic
                                  user:password wanted there); repositories pick what
                                  it does by their first path part:
             loc/...    upload Location on another host: http://127.0.0.2:ELSE/...
             drip/...   HEAD of a blob answers one byte a second, forever
             huge/...   POST of an upload answers 500 with a 4 GiB body, the
                        manifest GET a 4 GiB manifest
             echo/...   POST of an upload answers 401 whose body echoes the
                        request's Authorization header and a token JSON
             bigtoken/  (realm /token?...scope=repository:bigtoken...) a 4 GiB
                        token answer
  else     http://127.0.0.2       where `loc/` sends uploads: accepts them (201);
                                  also a plain-HTTP registry at a non-loopback
                                  address for clients that expect https
  tlsrealm https://127.0.0.2      Bearer with realm http://127.0.0.1:MAIN/token-downgrade
  tlsloc   https://127.0.0.2      Basic; upload Location http://127.0.0.2:ELSE/...

Every request is logged to --log as one JSON line: listener, method, path,
authorization (the header's value or null).
"""

import argparse
import json
import os
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUGE = 4 << 30
CHUNK = b"A" * (1 << 16)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def handler_for(name, state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def log_request_line(self):
            entry = {
                "listener": name,
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
            }
            with state["lock"]:
                with open(state["log"], "a") as f:
                    f.write(json.dumps(entry) + "\n")

        def reply(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def stream_huge(self, status, content_type, prefix=b""):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            sent = 0
            try:
                self.wfile.write(prefix)
                sent = len(prefix)
                while sent < HUGE:
                    self.wfile.write(CHUNK)
                    sent += len(CHUNK)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass
            self.close_connection = True

        def drain(self):
            n = int(self.headers.get("Content-Length") or 0)
            while n > 0:
                got = self.rfile.read(min(n, 1 << 16))
                if not got:
                    break
                n -= len(got)

        def handle_any(self):
            self.log_request_line()
            self.drain()
            path = self.path.split("?")[0]
            ports = state["ports"]
            if name == "main":
                return self.main(path, ports)
            if name == "else":
                # Uploads sent here by `loc/`; anything else: a registry without auth.
                if self.command == "PUT":
                    return self.reply(201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})
                if path == "/v2/":
                    return self.reply(200)
                return self.reply(404)
            if name == "tlsrealm":
                realm = f'http://127.0.0.1:{ports["main"]}/token-downgrade'
                return self.reply(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'})
            if name == "tlsloc":
                if self.headers.get("Authorization") is None:
                    return self.reply(401, headers={"WWW-Authenticate": 'Basic realm="hostile"'})
                if self.command == "POST" and path.endswith("/blobs/uploads/"):
                    loc = f'http://127.0.0.2:{ports["else"]}/upload/{uuid.uuid4().hex}?_state=downgraded'
                    return self.reply(202, headers={"Location": loc})
                return self.reply(404)

        def main(self, path, ports):
            if path.startswith("/token"):
                if self.headers.get("Authorization") is None:
                    return self.reply(401, headers={"WWW-Authenticate": 'Basic realm="hostile-token"'})
                if "bigtoken" in self.path:
                    return self.stream_huge(200, "application/json", b'{"token":"')
                token = "hostile-token-" + uuid.uuid4().hex
                return self.reply(200, json.dumps({"token": token, "expires_in": 300}).encode(),
                                  {"Content-Type": "application/json"})
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                realm = f'http://127.0.0.1:{ports["main"]}/token'
                return self.reply(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'})
            if path == "/v2/":
                return self.reply(200)
            parts = path.split("/")
            kind = parts[2] if len(parts) > 2 else ""
            if kind == "drip" and self.command == "HEAD" and "/blobs/" in path:
                try:
                    for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" * 1000:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass
                self.close_connection = True
                return
            if kind == "huge" and self.command == "POST":
                return self.stream_huge(500, "text/plain")
            if kind == "huge" and self.command == "GET" and "/manifests/" in path:
                return self.stream_huge(200, "application/vnd.oci.image.manifest.v1+json")
            if kind == "echo" and self.command == "POST":
                echoed = self.headers.get("Authorization")
                body = json.dumps({
                    "errors": [{"code": "UNAUTHORIZED", "message": f"you sent Authorization: {echoed}"}],
                    "token": echoed.split(" ", 1)[-1],
                }).encode()
                return self.reply(401, body, {"Content-Type": "application/json"})
            if self.command == "HEAD":
                return self.reply(404)
            if self.command == "POST" and path.endswith("/blobs/uploads/"):
                loc = f'http://127.0.0.2:{ports["else"]}/upload/{uuid.uuid4().hex}?_state=abc'
                return self.reply(202, headers={"Location": loc})
            if self.command == "PUT" and "/manifests/" in path:
                return self.reply(201)
            return self.reply(404)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    state = {"log": args.log, "lock": threading.Lock(), "ports": {}}
    listeners = [("main", "127.0.0.1", False), ("else", "127.0.0.2", False),
                 ("tlsrealm", "127.0.0.2", True), ("tlsloc", "127.0.0.2", True)]
    servers = []
    for name, host, tls in listeners:
        srv = Server((host, 0), handler_for(name, state))
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        state["ports"][name] = srv.server_address[1]
        servers.append(srv)
    with open(args.ports_file + ".tmp", "w") as f:
        for name, port in state["ports"].items():
            f.write(f"{name} {port}\n")
    os.rename(args.ports_file + ".tmp", args.ports_file)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
