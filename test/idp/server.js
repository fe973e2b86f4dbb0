// Test identity provider for mosquitto-oauth2 integration tests.
//
// A thin configuration of the `oidc-provider` package: confidential clients
// obtain access tokens with the client_credentials grant; tokens are opaque
// (RFC 7662 introspection) unless a `resource` is requested, in which case
// they are RFC 9068 JWT access tokens signed with RS256 or ES256. Clients
// registered for it may also use the device authorization grant (RFC 8628)
// and refresh tokens; with IDP_TEST_ROUTES=1 a pending device code can be
// approved or denied by a plain POST instead of a browser.
//
// See README.md in this directory for the environment variables, the clients
// file format, the endpoints and curl examples.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';
// oidc-provider's own in-memory store (there is no "exports" map, so the
// deep import works; the version is pinned in package.json).
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

import { generateJWKS } from './keys.js';

// oidc-provider prints its "NOTICE" lines with console.info (stdout). Keep
// stdout reserved for the single "IDP READY <issuer>" line tests wait for.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(1);
}

function readJSON(path, what) {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    return fail(`cannot read ${what} ${path}: ${err.message}`);
  }
}

// ---------------------------------------------------------------- settings

const port = Number.parseInt(process.env.IDP_PORT ?? '', 10);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  fail('IDP_PORT must be set to a port number (1-65535)');
}
const host = process.env.IDP_HOST || '127.0.0.1';

const certPath = process.env.IDP_TLS_CERT;
const keyPath = process.env.IDP_TLS_KEY;
const useTLS = Boolean(certPath && keyPath);
if (Boolean(certPath) !== Boolean(keyPath)) {
  fail('IDP_TLS_CERT and IDP_TLS_KEY must be set together');
}

// Off by default, like a real IdP: anyone who can reach the port could
// approve any pending device code.
const testRoutes = process.env.IDP_TEST_ROUTES === '1';

const clockTolerance = Number.parseInt(process.env.IDP_CLOCK_TOLERANCE ?? '0', 10);
if (!Number.isInteger(clockTolerance) || clockTolerance < 0) {
  fail('IDP_CLOCK_TOLERANCE must be a non-negative integer (seconds)');
}

// ------------------------------------------------------------------ clients

const DEFAULT_TTL = 3600;
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
// RFC 8628 §3.2: clients poll every 5 s when the answer has no `interval`.
const DEFAULT_POLL_INTERVAL = 5;
// oidc-provider's own defaults, which these per-client settings replace.
const DEFAULT_DEVICE_CODE_TTL = 600;
const DEFAULT_REFRESH_TOKEN_TTL = 14 * 24 * 60 * 60;
// How long an expired device code stays in the store (see memoryAdapter).
const DEVICE_CODE_GRACE = 600;
const SECONDS_FIELDS = ['access_token_ttl', 'device_code_ttl', 'device_poll_interval', 'refresh_token_ttl'];

function loadClients() {
  if (!process.env.IDP_CLIENTS) {
    process.stderr.write('idp: IDP_CLIENTS not set, no clients registered\n');
    return { clients: [], scopes: [] };
  }
  const doc = readJSON(process.env.IDP_CLIENTS, 'clients file');
  if (!doc || !Array.isArray(doc.clients)) {
    fail('clients file must be a JSON object with a "clients" array');
  }
  const scopes = new Set(Array.isArray(doc.scopes) ? doc.scopes : []);
  const clients = doc.clients.map((c, i) => {
    // A public client (token_endpoint_auth_method "none") has no secret.
    if (c?.token_endpoint_auth_method === 'none') {
      if (typeof c.client_id !== 'string' || c.client_secret !== undefined) {
        fail(`clients[${i}] is a public client (token_endpoint_auth_method "none"): it needs a string client_id and no client_secret`);
      }
      // oidc-provider would let anyone knowing the id mint client_credentials
      // tokens for it.
      if (!Array.isArray(c.grant_types) || c.grant_types.includes('client_credentials')) {
        fail(`clients[${i}] is a public client: it needs grant_types, without client_credentials`);
      }
    } else if (!c || typeof c.client_id !== 'string' || typeof c.client_secret !== 'string') {
      fail(`clients[${i}] needs string client_id and client_secret`);
    }
    if (c.claims !== undefined && (c.claims === null || typeof c.claims !== 'object' || Array.isArray(c.claims))) {
      fail(`clients[${i}].claims must be a JSON object`);
    }
    for (const field of SECONDS_FIELDS) {
      if (c[field] !== undefined && !(Number.isSafeInteger(c[field]) && c[field] > 0)) {
        fail(`clients[${i}].${field} must be a positive integer (seconds)`);
      }
    }
    if (typeof c.scope === 'string') {
      c.scope.split(' ').filter(Boolean).forEach((s) => scopes.add(s));
    }
    return {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    };
  });
  return { clients, scopes: [...scopes] };
}

// --------------------------------------------------------------------- keys

function loadKeys() {
  if (!process.env.IDP_KEYS) return generateJWKS();
  const jwks = readJSON(process.env.IDP_KEYS, 'keys file');
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    fail('keys file must be a JWKS ({"keys":[...]}) with private keys');
  }
  return jwks;
}

// ------------------------------------------------------- resource servers

// resource -> access token format and signing alg.
//   urn:mqtt:es256 (or any resource whose last ":" or "/" segment is
//   "es256", case-insensitive)                     -> JWT, ES256
//   urn:opaque:...                                  -> opaque, with aud
//   anything else (urn:mqtt, urn:mqtt:rs256, https://...) -> JWT, RS256
//
// The resource server's scopes are the requested ones; in a device_code or
// refresh_token request without `scope` they are those of the device code or
// refresh token (client_credentials requests only ever see params.scope).
function resourceServerInfo(ctx, resource) {
  const scope = ctx.oidc.params.scope
    || ctx.oidc.entities.DeviceCode?.scope
    || ctx.oidc.entities.RefreshToken?.scope
    || '';
  if (resource.startsWith('urn:opaque:')) {
    return { scope, audience: resource, accessTokenFormat: 'opaque' };
  }
  const last = resource.split(/[:/]/).filter(Boolean).pop()?.toLowerCase();
  const alg = last === 'es256' ? 'ES256' : 'RS256';
  return {
    scope,
    audience: resource,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg } },
  };
}

// ------------------------------------------------------------ the provider

const { clients, scopes } = loadClients();
const jwks = loadKeys();
const issuer = process.env.IDP_ISSUER || `${useTLS ? 'https' : 'http'}://${host}:${port}`;

// oidc-provider's default in-memory adapter, except that device codes are
// kept DEVICE_CODE_GRACE seconds past their expiry. The store drops an entry
// when it expires, and a poll with a device code it does not find answers
// invalid_grant; kept, the code is found and the poll answers expired_token
// (RFC 8628 §3.5), as does the test route (404 expired_token, not not_found).
// Expiry itself is unchanged: it is checked against the code's own exp.
function memoryAdapter(clockTolerance) {
  const factory = createMemoryAdapter(clockTolerance);
  return (model) => {
    const adapter = factory(model);
    if (model === 'DeviceCode') {
      const upsert = adapter.upsert.bind(adapter);
      adapter.upsert = (id, payload, expiresIn) => upsert(
        id,
        payload,
        typeof expiresIn === 'number' ? expiresIn + DEVICE_CODE_GRACE : expiresIn,
      );
    }
    return adapter;
  };
}

async function tokenClient(ctx, token) {
  if (token.client) return token.client;
  if (ctx?.oidc?.client?.clientId === token.clientId) return ctx.oidc.client;
  return provider.Client.find(token.clientId);
}

const configuration = {
  adapter: memoryAdapter(clockTolerance),
  clients,
  jwks,
  clockTolerance,
  scopes: ['openid', 'offline_access', ...scopes],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  extraClientMetadata: {
    properties: ['claims', ...SECONDS_FIELDS],
  },
  // Device codes are approved by the test route (below) for any account id;
  // an account's only claim is its sub.
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
  // Every refresh gives a new refresh token (and consumes the old one), so a
  // refresh token lives refresh_token_ttl seconds from its own issue whatever
  // the client type (oidc-provider's default rotates only some of them).
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // RFC 8628. The verification page (/device) exists but, with no login
    // interactions configured, cannot approve anything; tests use the
    // IDP_TEST_ROUTES routes instead.
    deviceFlow: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect any token (the broker
      // introspects tokens issued to devices).
      allowedPolicy: async () => true,
    },
    revocation: {
      enabled: true,
      // Any authenticated client may revoke any token (test convenience).
      allowedPolicy: async () => true,
    },
    resourceIndicators: {
      enabled: true,
      // No resource parameter -> no resource server -> opaque token.
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => resourceServerInfo(ctx, resource),
    },
  },
  // The client's `claims` are copied into every access token it gets: the
  // stored payload of opaque tokens (shown by introspection) and the payload
  // of JWT access tokens. A token issued for an account (device_code and
  // refresh_token grants) has `sub` = the account instead of claims.sub.
  extraTokenClaims: async (ctx, token) => {
    const client = await tokenClient(ctx, token);
    const claims = client?.claims;
    if (!claims) return undefined;
    const extra = structuredClone(claims);
    if (token.accountId) extra.sub = token.accountId;
    return extra;
  },
  formats: {
    customizers: {
      // oidc-provider writes `sub: accountId || client_id` over the extra
      // claims in JWT access tokens; restore the client's configured sub
      // (client_credentials tokens, which have no account).
      jwt: async (ctx, token, jwt) => {
        if (token.accountId) return;
        const client = await tokenClient(ctx, token);
        if (client?.claims && typeof client.claims.sub === 'string') {
          jwt.payload.sub = client.claims.sub;
        }
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token, client) => client?.access_token_ttl
      || token.resourceServer?.accessTokenTTL
      || DEFAULT_TTL,
    AccessToken: (ctx, token, client) => client?.access_token_ttl
      || token.resourceServer?.accessTokenTTL
      || DEFAULT_TTL,
    DeviceCode: (ctx, code, client) => client?.device_code_ttl || DEFAULT_DEVICE_CODE_TTL,
    RefreshToken: (ctx, token, client) => client?.refresh_token_ttl || DEFAULT_REFRESH_TOKEN_TTL,
  },
};

// ------------------------------------------------------------ test routes

const MAX_TEST_BODY = 64 * 1024;

async function readParams(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_TEST_BODY) return undefined;
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const params = Object.fromEntries(new URLSearchParams(ctx.querystring));
  if (ctx.is('application/json')) {
    const doc = JSON.parse(text || '{}');
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new SyntaxError('not a JSON object');
    return { ...params, ...doc };
  }
  return { ...params, ...Object.fromEntries(new URLSearchParams(text)) };
}

function answer(ctx, status, body) {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = body;
}

// POST /test/device/approve and /test/device/deny, parameters user_code and
// (approve only) account: what a user's browser would do at the verification
// page. Mirrors oidc-provider's code_verification action and
// deviceUserFlowResponse (lib/actions/code_verification.js,
// lib/actions/authorization/device.js).
async function testDeviceRoutes(ctx, next) {
  const match = /^\/test\/device\/(approve|deny)$/.exec(ctx.path);
  if (!match) return next();
  if (ctx.method !== 'POST') {
    ctx.set('Allow', 'POST');
    return answer(ctx, 405, { error: 'invalid_request', error_description: 'use POST' });
  }
  const action = match[1];

  let params;
  try {
    params = await readParams(ctx);
  } catch (err) {
    return answer(ctx, 400, { error: 'invalid_request', error_description: `cannot parse the body: ${err.message}` });
  }
  if (!params) return answer(ctx, 413, { error: 'invalid_request', error_description: 'body too large' });

  const input = params.user_code;
  if (typeof input !== 'string' || input === '') {
    return answer(ctx, 400, { error: 'invalid_request', error_description: 'user_code is required' });
  }
  if (params.account !== undefined && (typeof params.account !== 'string' || params.account === '')) {
    return answer(ctx, 400, { error: 'invalid_request', error_description: 'account must be a non-empty string' });
  }

  // As typed by a user: any case, with or without the dash (oidc-provider's
  // normalize() in lib/helpers/user_codes.js).
  const userCode = input.toUpperCase().replace(/\W/g, '');
  const code = await provider.DeviceCode.findByUserCode(userCode, { ignoreExpiration: true });
  if (!code) {
    return answer(ctx, 404, { error: 'not_found', error_description: 'no device code with this user_code' });
  }
  if (code.isExpired) {
    return answer(ctx, 404, { error: 'expired_token', error_description: 'the device code has expired' });
  }
  if (code.error || code.accountId || code.inFlight || code.consumed) {
    return answer(ctx, 409, { error: 'already_used', error_description: 'the device code was already approved or denied' });
  }
  const client = await provider.Client.find(code.clientId);
  if (!client) {
    return answer(ctx, 404, { error: 'not_found', error_description: 'the device code\'s client is gone' });
  }

  if (action === 'deny') {
    // What the "Abort" button of the confirmation page does; the next poll
    // answers access_denied.
    Object.assign(code, { error: 'access_denied', errorDescription: 'End-User aborted interaction' });
    await code.save();
    return answer(ctx, 200, { status: 'denied', client_id: client.clientId });
  }

  const accountId = params.account
    || (typeof client.claims?.sub === 'string' && client.claims.sub)
    || 'device-user';
  // The scope and resource of the device authorization request, as
  // oidc-provider checked and stored them. offline_access is in the scope only
  // when the client may use refresh_token; it then gets a refresh token.
  const { scope, resource } = code.params || {};
  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  if (scope) grant.addOIDCScope(scope);
  if (typeof resource === 'string') grant.addResourceScope(resource, scope || '');
  const grantId = await grant.save();

  Object.assign(code, {
    accountId,
    authTime: Math.floor(Date.now() / 1000),
    grantId,
    scope: scope || undefined,
    resource: typeof resource === 'string' ? resource : undefined,
  });
  await code.save();
  return answer(ctx, 200, {
    status: 'approved', client_id: client.clientId, account: accountId, scope: scope || undefined,
  });
}

// ------------------------------------------------------------------ start

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  fail(`bad configuration: ${err.stack || err}`);
}

// oidc-provider 9 answers a device authorization request without `interval`
// (clients then poll every 5 s, RFC 8628 §3.2) and never answers slow_down.
// Add the client's device_poll_interval to the answer when it has one.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object'
    && typeof ctx.body.device_code === 'string'
    && ctx.oidc?.route === 'device_authorization') {
    ctx.body.interval = ctx.oidc.client?.device_poll_interval || DEFAULT_POLL_INTERVAL;
  }
});

if (testRoutes) {
  provider.use(testDeviceRoutes);
  process.stderr.write('idp: IDP_TEST_ROUTES=1: POST /test/device/approve and /test/device/deny are enabled\n');
}

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`idp: server_error: ${err.stack || err}\n`);
});
for (const event of ['grant.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => {
    process.stderr.write(`idp: ${event}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}\n`);
  });
}

const callback = provider.callback();
const server = useTLS
  ? https.createServer({
    cert: fs.readFileSync(certPath),
    key: fs.readFileSync(keyPath),
  }, callback)
  : http.createServer(callback);

server.on('error', (err) => fail(`listen ${host}:${port}: ${err.message}`));
server.listen(port, host, () => {
  process.stdout.write(`IDP READY ${issuer}\n`);
});

function shutdown(signal) {
  process.stderr.write(`idp: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
