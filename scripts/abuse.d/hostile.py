"""A hostile token service on loopback: it answers every exchange with an error that
echoes what the broker sent it -- the client assertion (Entra, RFC 8693), the client
secret (RFC 8693 Basic auth), the web identity token (AWS STS) -- in the fields a broker
is tempted to pass on or log: error_description, error, trace_id, correlation_id,
error_uri, AWS <Code>/<Message>/<RequestId>; 200 KB trace ids; CR/LF in fields.

The variant is chosen by the request (the scope for Entra and RFC 8693, the role ARN for
AWS), so every variant is exercised whatever the broker caches. Entra is served over
HTTPS (authorityHost must be https) with a throw-away certificate made by openssl;
RFC 8693 and AWS over plain http on 127.0.0.1 (upstream.allowInsecureLoopback).
"""
import base64
import json
import os
import re
import ssl
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUGE = 200 * 1024
INJECT = "INJECTED-LOG-LINE"


def entra_variant(n, secret):
    """(status, content type, body, extra headers) of Entra variant n."""
    crlf = f"\r\nlevel=critical {INJECT} "
    base = {"error": "invalid_client", "error_codes": [70021], "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000001", "correlation_id": "00000000-0000-0000-0000-000000000002"}
    variants = [
        ("desc", 400, dict(base, error_description=f"AADSTS70021: no match for assertion {secret}")),
        ("ids", 400, dict(base, error_description="AADSTS700213: subject differs", error_codes=[700213],
                          trace_id=secret, correlation_id=secret)),
        ("huge-trace", 400, dict(base, error_description="AADSTS50000: x", error_codes=[50000],
                                 trace_id="T" * HUGE + secret, correlation_id="C" * HUGE)),
        ("crlf", 400, dict(base, error="invalid_request\r\n" + INJECT, error_description=f"AADSTS9002313:{crlf}{secret}",
                           trace_id=f"t\r\nX-Injected: yes{crlf}", correlation_id=f"c\n{INJECT}")),
        ("5xx", 500, dict(base, error="server_error", error_description=f"AADSTS90033: retry {secret}")),
        ("200-no-token", 200, {"token_type": "Bearer", "expires_in": "x", "error_description": secret, "trace_id": secret}),
        ("plain", 400, None),
        ("types", 400, {"error": secret, "error_codes": [secret, 70021], "error_description": [secret], "error_uri": secret,
                        "suberror": secret}),
        ("429", 429, dict(base, error="temporarily_unavailable", error_description=f"AADSTS50196: slow down {secret}")),
    ]
    name, status, body = variants[n % len(variants)]
    if body is None:
        return name, status, "text/plain", f"error {secret}\r\n{INJECT}\r\n".encode(), {}
    headers = {"Retry-After": "1"} if status == 429 else {}
    headers["x-ms-request-id"] = secret[:200]
    return name, status, "application/json", json.dumps(body).encode(), headers


ENTRA_VARIANTS = 9


def aws_variant(n, secret):
    crlf = f"\r\nlevel=critical {INJECT} "

    def error(code, message, request_id):
        return (f"<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    variants = [
        ("code", 400, error(secret, "bad", "r-1")),
        ("message", 400, error("InvalidIdentityToken", f"token {secret} rejected", "r-2")),
        ("request-id", 400, error("AccessDenied", "no", secret)),
        ("huge-request-id", 400, error("AccessDenied", "no", "R" * HUGE + secret)),
        ("crlf", 400, error(f"InvalidIdentityToken{crlf}", f"m{crlf}{secret}", f"r\r\nX-Injected: yes{crlf}")),
        ("5xx", 503, error("ServiceUnavailable", secret, secret)),
        ("200-garbage", 200, f"<AssumeRoleWithWebIdentityResponse><Credentials><AccessKeyId>{secret}</AccessKeyId>"),
    ]
    name, status, body = variants[n % len(variants)]
    return name, status, "text/xml", body.encode(), {"x-amzn-RequestId": secret[:200]}


AWS_VARIANTS = 7


class Hostile:
    def __init__(self, workdir):
        self.secrets = set()
        self.requests = 0
        self.by_variant = {}
        self.lock = threading.Lock()
        self.cert = os.path.join(workdir, "hostile-cert.pem")
        key = os.path.join(workdir, "hostile-key.pem")
        made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", self.cert,
                               "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                              capture_output=True, timeout=60)
        self.tls_ok = made.returncode == 0
        handler = self._handler()
        self.plain = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.plain.daemon_threads = True
        self.servers = [self.plain]
        self.tls = None
        if self.tls_ok:
            self.tls = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            self.tls.daemon_threads = True
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, key)
            self.tls.socket = context.wrap_socket(self.tls.socket, server_side=True)
            self.servers.append(self.tls)
        self.threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in self.servers]
        for t in self.threads:
            t.start()

    @property
    def http_base(self):
        return f"http://127.0.0.1:{self.plain.server_address[1]}"

    @property
    def https_base(self):
        return f"https://127.0.0.1:{self.tls.server_address[1]}" if self.tls else None

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)).decode(errors="replace")
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                secrets = [form.get(k) for k in ("client_assertion", "subject_token", "WebIdentityToken", "client_secret")]
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Basic "):
                    try:
                        secrets.append(base64.b64decode(auth[6:]).decode().split(":", 1)[1])
                    except Exception:  # noqa: BLE001
                        pass
                secrets = [s for s in secrets if s]
                echo = " ".join(secrets) or "no-secret-seen"
                if "Action=AssumeRoleWithWebIdentity" in body or form.get("Action"):
                    m = re.search(r"hostile-(\d+)", form.get("RoleArn", ""))
                    name, status, ctype, payload, headers = aws_variant(int(m.group(1)) if m else 0, echo)
                    kind = "aws"
                else:
                    m = re.search(r"hostile-(\d+)", form.get("scope", ""))
                    name, status, ctype, payload, headers = entra_variant(int(m.group(1)) if m else 0, echo)
                    kind = "rfc8693" if "subject_token" in form else "entra"
                with outer.lock:
                    outer.secrets.update(secrets)
                    outer.requests += 1
                    key = f"{kind}:{name}"
                    outer.by_variant[key] = outer.by_variant.get(key, 0) + 1
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def secret_windows(secret):
    """Pieces of a secret that must never appear anywhere: for a JWT, 24-character windows
    of its signature (claims are public and logged on purpose), else of the whole value."""
    parts = secret.split(".")
    core = parts[2] if len(parts) == 3 and len(parts[2]) >= 24 else secret
    if len(core) < 16:
        return [core]
    width = 24 if len(core) >= 24 else 16
    return [core[i:i + width] for i in range(0, len(core) - width + 1, width // 2)]


def leaks(text, secrets):
    """How many secrets have some piece in `text`."""
    count = 0
    for s in secrets:
        if any(w in text for w in secret_windows(s)):
            count += 1
    return count


def injected_lines(text):
    """Log lines that begin with text the token service injected through a CR or LF."""
    return [line for line in re.split(r"[\r\n]", text) if re.match(rf"\s*(level=critical )?{INJECT}", line)]


def leak_fields(text, secrets):
    """The log key (`error.message=`, `upstream.trace_id=`) before the first leaked piece of each secret."""
    fields = set()
    for s in secrets:
        for w in secret_windows(s):
            i = text.find(w)
            if i < 0:
                continue
            line_start = max(text.rfind("\n", 0, i), text.rfind("\r", 0, i)) + 1
            m = re.findall(r"(?:^| )([a-z]+(?:[._][a-z_]+)+)=", text[line_start:i])
            fields.add(m[-1] if m else "a line of its own")
            break
    return fields
