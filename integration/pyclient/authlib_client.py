"""Drives outergate with Authlib's OAuth2Session (Debian python3-authlib),
unmodified: discovery through /.well-known/openid-configuration checked by
authlib's RFC 8414 validator, the client-credentials grant, a device call
with the token, introspection and revocation of it.

Usage: authlib_client.py <issuer> <client_id> <client_secret> <device_url> <basic|post> <scope|->
("-" is an empty scope list). Prints one JSON line; a failure the server
reported is {"error", "status", "challenge"}.
"""

import os
import sys

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.integrations.base_client.errors import OAuthError  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

from discovery import discover, emit, validate_rfc8414  # noqa: E402

issuer, client_id, secret, device_url, method, scope = sys.argv[1:7]
scopes = [] if scope == "-" else scope.split()

metadata, _ = discover(issuer, "openid-configuration")
validate_rfc8414(metadata)

sent = {}


def remember(resp):
    # What went on the wire: the parameter names (not values: one is the
    # secret), the requested scope, whether Basic was used, and the status.
    from urllib.parse import parse_qs

    body = parse_qs(resp.request.body or "", keep_blank_values=True)
    sent.update(params=sorted(body), scope=body.get("scope"), basic="Authorization" in resp.request.headers,
                status=resp.status_code, challenge=resp.headers.get("WWW-Authenticate", ""))
    return resp


session = OAuth2Session(client_id, secret, scope=scopes,
                        token_endpoint_auth_method="client_secret_" + method)
session.register_compliance_hook("access_token_response", remember)
try:
    token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
except OAuthError as e:
    emit({"error": e.error, "status": sent.get("status"), "challenge": sent.get("challenge"), "sent": sent})
    sys.exit(0)

device = session.get(device_url, timeout=10)
intro = session.introspect_token(metadata["introspection_endpoint"], token=token["access_token"])
revoke = session.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
after = session.get(device_url, timeout=10)
emit({
    "token_type": token["token_type"], "scope": token.get("scope"), "expires_in": token.get("expires_in"),
    "sent": sent, "device_status": device.status_code, "device_code": device.json()["meta"]["code"],
    "introspection": intro.json(), "revoke_status": revoke.status_code,
    "device_after_revoke": after.status_code,
    "auth_methods": metadata["token_endpoint_auth_methods_supported"],
    "response_types": metadata["response_types_supported"],
})
