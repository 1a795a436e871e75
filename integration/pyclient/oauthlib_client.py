"""Drives outergate with requests-oauthlib's OAuth2Session and oauthlib's
BackendApplicationClient (Debian python3-requests-oauthlib,
python3-oauthlib), unmodified: the token endpoint found through RFC 8414
discovery (the library has none of its own), the client-credentials grant,
and a device call with the token.

Usage: oauthlib_client.py <issuer> <client_id> <client_secret> <device_url> <basic|post> <scope|->
Prints one JSON line; a failure the server reported is {"error", "status"}.
"""

import os
import sys

# Loopback HTTP in the tests; and the server may grant another scope than
# the one asked for (RFC 6749 §3.3: the default for an empty one), which
# oauthlib reports as a Warning unless told it is expected.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error  # noqa: E402
from requests.auth import HTTPBasicAuth  # noqa: E402
from requests_oauthlib import OAuth2Session  # noqa: E402

from discovery import discover, emit  # noqa: E402

issuer, client_id, secret, device_url, method, scope = sys.argv[1:7]
scopes = [] if scope == "-" else scope.split()

metadata, _ = discover(issuer, "oauth-authorization-server")
session = OAuth2Session(client=BackendApplicationClient(client_id=client_id, scope=scopes))
sent = {}


def remember(resp):
    from urllib.parse import parse_qs

    body = parse_qs(resp.request.body or "", keep_blank_values=True)
    sent.update(params=sorted(body), scope=body.get("scope"), basic="Authorization" in resp.request.headers,
                status=resp.status_code, challenge=resp.headers.get("WWW-Authenticate", ""))
    return resp


session.register_compliance_hook("access_token_response", remember)
try:
    if method == "basic":
        token = session.fetch_token(metadata["token_endpoint"], auth=HTTPBasicAuth(client_id, secret))
    else:
        token = session.fetch_token(metadata["token_endpoint"], client_secret=secret, include_client_id=True)
except OAuth2Error as e:
    emit({"error": e.error, "status": e.status_code, "class": type(e).__name__, "challenge": sent.get("challenge"), "sent": sent})
    sys.exit(0)

device = session.get(device_url, timeout=10)
emit({
    "token_type": token["token_type"], "scope": " ".join(token.get("scope") or []), "expires_in": token.get("expires_in"),
    "sent": sent, "device_status": device.status_code, "device_code": device.json()["meta"]["code"],
})
