"""A local stand-in for the services that hand a CI job or a VM its OIDC token:
GitHub Actions' ID-token endpoint and the GCE metadata server. Serves the JWT in
TOKEN_FILE (re-read on every request) and logs every request as a JSON line.

usage: oidc_stand_in.py github|gcp TOKEN_FILE PORT_FILE LOG_FILE [BEARER]
  github  GET /token?...&audience=A with "Authorization: bearer BEARER" -> {"value": JWT}
  gcp     GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=A&format=full
          with "Metadata-Flavor: Google" -> JWT as text
The chosen port is written to PORT_FILE once listening.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

mode, token_file, port_file, log_file = sys.argv[1:5]
bearer = sys.argv[5] if len(sys.argv) > 5 else None


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if mode == "github":
            authorized = self.headers.get("Authorization") == f"bearer {bearer}"
            expected_path = "/token"
        else:
            authorized = self.headers.get("Metadata-Flavor") == "Google"
            expected_path = "/computeMetadata/v1/instance/service-accounts/default/identity"
        with open(log_file, "a") as log:
            log.write(json.dumps({"path": url.path, "query": query, "authorized": authorized}) + "\n")
        if url.path != expected_path:
            return self.answer(404, "not found", "text/plain")
        if not authorized:
            return self.answer(403 if mode == "gcp" else 401, "unauthorized", "text/plain")
        token = open(token_file).read().strip()
        if mode == "github":
            self.answer(200, json.dumps({"count": 1, "value": token}), "application/json")
        else:
            self.answer(200, token, "application/text")

    def answer(self, status, body, content_type):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(port_file + ".tmp", port_file)
server.serve_forever()
