// Discovers outergate's RFC 8414 metadata and runs the client-credentials
// grant with openid-client, then calls a device route with the token.
// Usage: node client.mjs <issuer> <client_id> <client_secret> <device_url> [basic|post] [oauth2|oidc]
// (oidc discovers through /.well-known/openid-configuration)
// Prints one JSON line: {"token_type","expires_in","scope","device_status","device_code"}
// or {"error": "...", "code": "..."} on a failure the server reported.
import * as client from 'openid-client';

const [issuer, clientId, clientSecret, deviceURL, method = 'post', algorithm = 'oauth2'] = process.argv.slice(2);
const auth = method === 'basic' ? client.ClientSecretBasic(clientSecret) : client.ClientSecretPost(clientSecret);

try {
  const config = await client.discovery(new URL(issuer), clientId, undefined, auth, {
    execute: [client.allowInsecureRequests],
    algorithm,
  });
  const tokens = await client.clientCredentialsGrant(config, { scope: 'read' });
  const res = await fetch(deviceURL, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  const body = await res.json();
  console.log(JSON.stringify({
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    access_token_length: tokens.access_token.length,
    device_status: res.status,
    device_code: body.meta.code,
  }));
} catch (e) {
  // With Basic, a 401 carries a WWW-Authenticate challenge (RFC 6749 §5.2),
  // which openid-client reports as a challenge error; the RFC error code is
  // in the body it keeps.
  let error = e.error;
  if (!error && e.response) {
    try { error = (await e.response.clone().json()).error; } catch { /* not JSON */ }
  }
  const challenge = Array.isArray(e.cause) && e.cause[0] ? e.cause[0].scheme : '';
  console.log(JSON.stringify({ error: error ?? e.message, code: e.code ?? '', status: e.status ?? e.response?.status ?? 0, challenge }));
}
