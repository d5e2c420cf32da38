// A real OpenID provider (panva/oidc-provider v9) for KNHK's authentication tests.
//
// Started by tests/service/auth/conftest.py as `node provider.mjs CONFIG.json`. It listens on a free loopback
// port, then prints one JSON line {"issuer": ..., "port": ...} on stdout. It issues RS256 JWT access tokens
// (RFC 9068) by the client-credentials grant with resource indicators (RFC 8707): the token audience is the
// requested `resource` (any absolute `urn:` URI). Each client gets its own extra claims (groups, amr, sector,
// or an `nbf_offset` turned into a future `nbf`).
//
// CONFIG.json: {"jwks": {"keys": [private JWKs]}, "clients": [{"client_id", "client_secret", "claims",
//               "nbf_offset"?}], "admin_secret": "...", "access_token_ttl": 600,
//               "code_clients"?: [{"client_id", "client_secret", "redirect_uris"}], "accounts"?: {login: claims}}
//
// Code clients (the console's sign-in) use the authorization code flow through the provider's development
// login page (any login, any password; consent is implied for them): their access tokens carry the claims of
// the account signed in as (`accounts`, by login name), their ID tokens its `sub`.
//
// Admin endpoints (header `x-admin-secret` must match):
//   POST /__admin/rotate  body: {"keys": [private JWKs]}  → the provider is rebuilt with that JWKS (key rotation)
//   GET  /__admin/stats   → {"jwks_requests": n, "discovery_requests": n, "generation": n}
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const stats = { jwks_requests: 0, discovery_requests: 0, generation: 0 };
const claimsByClient = new Map(config.clients.map((c) => [c.client_id, c]));
const codeClients = new Set((config.code_clients ?? []).map((c) => c.client_id));
const accounts = config.accounts ?? {};

function build(issuer, jwks) {
  const provider = new Provider(issuer, {
    jwks,
    clients: config.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'knhk',
    })).concat((config.code_clients ?? []).map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: c.redirect_uris,
      scope: 'openid knhk',
    }))),
    scopes: ['openid', 'knhk'],
    pkce: { required: () => true },
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (!codeClients.has(ctx.oidc.client.clientId)) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid knhk');
      grant.addResourceScope('urn:knhk:api', 'knhk');
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: codeClients.size > 0 },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:knhk:api',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (!resourceIndicator.startsWith('urn:')) {
            throw new Error(`unexpected resource ${resourceIndicator}`);
          }
          return {
            scope: 'knhk',
            audience: resourceIndicator,
            accessTokenTTL: config.access_token_ttl ?? 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: (_ctx, token) => {
      if (token.accountId && accounts[token.accountId]) return { ...accounts[token.accountId] };
      const client = claimsByClient.get(token.clientId);
      if (!client) return undefined;
      const extra = { ...(client.claims ?? {}) };
      if (typeof client.nbf_offset === 'number') {
        extra.nbf = Math.floor(Date.now() / 1000) + client.nbf_offset;
      }
      return extra;
    },
    cookies: { keys: [config.admin_secret] },
  });
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`provider server_error: ${err.stack}\n`);
  });
  stats.generation += 1;
  return provider;
}

let current = null; // the request handler of the provider in use
let issuer = null;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path.startsWith('/__admin/')) {
    if (req.headers['x-admin-secret'] !== config.admin_secret) {
      reply(res, 403, { error: 'forbidden' });
      return;
    }
    if (path === '/__admin/stats' && req.method === 'GET') {
      reply(res, 200, stats);
      return;
    }
    if (path === '/__admin/rotate' && req.method === 'POST') {
      try {
        const jwks = JSON.parse(await readBody(req));
        current = build(issuer, jwks).callback();
        reply(res, 200, { generation: stats.generation });
      } catch (err) {
        reply(res, 400, { error: String(err) });
      }
      return;
    }
    reply(res, 404, { error: 'not found' });
    return;
  }
  if (path === '/jwks') stats.jwks_requests += 1;
  if (path === '/.well-known/openid-configuration') stats.discovery_requests += 1;
  current(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  current = build(issuer, config.jwks).callback();
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
