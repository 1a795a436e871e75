"""Discovery shared by the Python clients of the interop tests: fetch
outergate's authorization-server metadata from a well-known path and check
it with authlib's RFC 8414 validator when authlib is there."""

import json
import os
import urllib.request


def discover(issuer, well_known):
    """Return (metadata, url) for the issuer: well_known is
    "oauth-authorization-server" or "openid-configuration"."""
    url = issuer.rstrip("/") + "/.well-known/" + well_known
    with urllib.request.urlopen(url, timeout=10) as resp:
        ctype = resp.headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            raise ValueError("metadata Content-Type " + ctype)
        metadata = json.load(resp)
    if metadata.get("issuer") != issuer:
        raise ValueError("metadata issuer %r, want %r" % (metadata.get("issuer"), issuer))
    return metadata, url


def validate_rfc8414(metadata):
    """Run authlib's strict RFC 8414 validator; the gateway of the tests
    speaks plain HTTP on loopback, which authlib allows only with
    AUTHLIB_INSECURE_TRANSPORT."""
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    AuthorizationServerMetadata(metadata).validate()


def emit(result):
    print(json.dumps(result, sort_keys=True))
