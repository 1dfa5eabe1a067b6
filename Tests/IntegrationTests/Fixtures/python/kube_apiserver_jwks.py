"""A local stand-in for the Kubernetes API server's service-account issuer keys: serves
GET /openid/v1/jwks over HTTPS, only with "Authorization: Bearer <the token in BEARER_FILE>",
answering with JWKS_FILE (both re-read on every request, so a test can rotate either), and
logs every request as a JSON line (path and whether it was authorized; never the token).

usage: kube_apiserver_jwks.py CERT KEY BEARER_FILE JWKS_FILE PORT_FILE LOG_FILE
The chosen port is written to PORT_FILE once listening (127.0.0.1).
"""
import json
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, bearer_file, jwks_file, port_file, log_file = sys.argv[1:7]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        expected = "Bearer " + open(bearer_file).read().strip()
        authorized = self.headers.get("Authorization") == expected
        with open(log_file, "a") as log:
            log.write(json.dumps({"path": self.path, "authorized": authorized}) + "\n")
        if not authorized:
            return self.answer(401, json.dumps({"kind": "Status", "reason": "Unauthorized", "code": 401}))
        if self.path != "/openid/v1/jwks":
            return self.answer(404, json.dumps({"kind": "Status", "reason": "NotFound", "code": 404}))
        self.answer(200, open(jwks_file).read())

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
