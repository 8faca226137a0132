"""An HTTP proxy in front of a registry that flips one byte of every blob it
serves (GET /v2/.../blobs/...), to prove that corrupted downloads are refused.

    python3 corrupt_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT
"""
import http.client
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def forward(self, send_body):
        upstream = http.client.HTTPConnection(sys.argv[2], timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, headers=headers)
        response = upstream.getresponse()
        body = response.read()
        if send_body and "/blobs/" in self.path and response.status == 200 and body:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() in ("transfer-encoding", "connection"):
                continue
            if key.lower() == "content-length" and send_body:
                continue
            self.send_header(key, value)
        if send_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self):
        self.forward(True)

    def do_HEAD(self):
        self.forward(False)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
