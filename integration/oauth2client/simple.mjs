// Drives outergate with simple-oauth2's ClientCredentials, unmodified: the
// endpoints found through RFC 8414 discovery (the library has none of its
// own), the client-credentials grant and a device call with the token.
// Not its revoke(): it demands a JSON content type on the answer, and RFC
// 7009's answer is an empty 200 (Ory Hydra's too).
// Usage: node simple.mjs <issuer> <client_id> <client_secret> <device_url> <header|body> <scope|-> [form|json]
// ("-" is an empty scope list, which simple-oauth2 sends as scope=).
// Prints one JSON line; a failure the server reported is {"error", "status", "challenge"}.
import http from 'node:http';
import { ClientCredentials } from 'simple-oauth2';

const [issuer, clientId, clientSecret, deviceURL, method, scope, bodyFormat = 'form'] = process.argv.slice(2);
const scopes = scope === '-' ? [] : scope.split(' ');

const res = await fetch(new URL('/.well-known/oauth-authorization-server', issuer));
const metadata = await res.json();
if (metadata.issuer !== issuer) throw new Error(`metadata issuer ${metadata.issuer}, want ${issuer}`);
const tokenURL = new URL(metadata.token_endpoint);

// What the library puts on the wire, seen at Node's HTTP layer: the
// parameter names (not their values: one may be the secret), the scope,
// and whether Basic was used.
const sent = {};
const write = http.ClientRequest.prototype.write;
http.ClientRequest.prototype.write = function (chunk, ...rest) {
  if (this.path === tokenURL.pathname) {
    const text = String(chunk);
    const params = this.getHeader('content-type')?.startsWith('application/json')
      ? JSON.parse(text) : Object.fromEntries(new URLSearchParams(text));
    Object.assign(sent, { params: Object.keys(params).sort(), basic: this.hasHeader('authorization'),
      scope: 'scope' in params ? [params.scope] : null });
  }
  return write.call(this, chunk, ...rest);
};

const client = new ClientCredentials({
  client: { id: clientId, secret: clientSecret },
  auth: { tokenHost: tokenURL.origin, tokenPath: tokenURL.pathname },
  options: { authorizationMethod: method, bodyFormat },
});

try {
  const accessToken = await client.getToken({ scope: scopes });
  const tok = accessToken.token;
  const device = await fetch(deviceURL, { headers: { Authorization: `Bearer ${tok.access_token}` } });
  const body = await device.json();
  console.log(JSON.stringify({
    token_type: tok.token_type, scope: tok.scope, expires_in: tok.expires_in,
    expired: accessToken.expired(), device_status: device.status, device_code: body.meta.code, sent,
  }));
} catch (e) {
  // simple-oauth2 rejects with a Boom error: the status in output, the
  // server's JSON in data.payload.
  const payload = e.data?.payload ?? {};
  console.log(JSON.stringify({
    error: payload.error ?? e.message, status: e.output?.statusCode ?? 0,
    challenge: e.data?.res?.headers?.['www-authenticate'] ?? '',
  }));
}
