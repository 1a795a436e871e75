"""A resource server that trusts outergate's introspection (RFC 7662) and
nothing else: it holds only its own client credentials (a client with
`introspect any`), finds the introspection endpoint through RFC 8414
discovery, and protects GET /resource/<scope> with Authlib's
ResourceProtector and IntrospectTokenValidator (Debian python3-authlib).

Usage: resource_server.py <issuer> <client_id> <client_secret> <port>
GET /resource/<scope> with a Bearer token answers 200 and what
introspection said ({"sub", "client_id", "scope", "exp", "iat", "nbf",
"iss"}), or the refusal {"error"} with its status: 401 invalid_token, 403
insufficient_scope. GET /healthz answers 200 once it listens.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2 import OAuth2Error, ResourceProtector  # noqa: E402
from authlib.oauth2.rfc6750 import InvalidTokenError  # noqa: E402
from authlib.oauth2.rfc7662 import IntrospectTokenValidator  # noqa: E402

from discovery import discover, validate_rfc8414  # noqa: E402

issuer, client_id, client_secret, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
metadata, _ = discover(issuer, "oauth-authorization-server")
validate_rfc8414(metadata)
session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_basic")


class OutergateIntrospection(IntrospectTokenValidator):
    def introspect_token(self, token_string):
        resp = session.introspect_token(metadata["introspection_endpoint"], token=token_string,
                                        token_type_hint="access_token", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def validate_token(self, token, scopes, request):
        super().validate_token(token, scopes, request)
        # What a careful resource server checks beside "active": the
        # issuer it discovered, and the expiry itself.
        if token.get("iss") != metadata["issuer"] or token.get("exp", 0) <= time.time():
            raise InvalidTokenError()


protect = ResourceProtector()
protect.register_token_validator(OutergateIntrospection(realm="resource"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            return self.answer(200, {"ok": True})
        if not self.path.startswith("/resource/"):
            return self.answer(404, {"error": "not_found"})
        scope = self.path[len("/resource/"):]
        try:
            token = protect.validate_request([scope], self)
        except OAuth2Error as e:
            return self.answer(e.status_code or 401, {"error": e.error})
        self.answer(200, {k: token.get(k) for k in ("sub", "client_id", "scope", "exp", "iat", "nbf", "iss", "active")})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass  # the tests read answers, not logs


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
