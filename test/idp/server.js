// Test identity provider for mosquitto-oauth2 integration tests.
//
// A thin configuration of the `oidc-provider` package: confidential clients
// obtain access tokens with the client_credentials grant; tokens are opaque
// (RFC 7662 introspection) unless a `resource` is requested, in which case
// they are RFC 9068 JWT access tokens signed with RS256 or ES256.
//
// See README.md in this directory for the environment variables, the clients
// file format, the endpoints and curl examples.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';

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

const clockTolerance = Number.parseInt(process.env.IDP_CLOCK_TOLERANCE ?? '0', 10);
if (!Number.isInteger(clockTolerance) || clockTolerance < 0) {
  fail('IDP_CLOCK_TOLERANCE must be a non-negative integer (seconds)');
}

// ------------------------------------------------------------------ clients

const DEFAULT_TTL = 3600;

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
    if (!c || typeof c.client_id !== 'string' || typeof c.client_secret !== 'string') {
      fail(`clients[${i}] needs string client_id and client_secret`);
    }
    if (c.claims !== undefined && (c.claims === null || typeof c.claims !== 'object' || Array.isArray(c.claims))) {
      fail(`clients[${i}].claims must be a JSON object`);
    }
    if (c.access_token_ttl !== undefined
      && !(Number.isSafeInteger(c.access_token_ttl) && c.access_token_ttl > 0)) {
      fail(`clients[${i}].access_token_ttl must be a positive integer (seconds)`);
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
function resourceServerInfo(ctx, resource) {
  const scope = ctx.oidc.params.scope || '';
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

async function tokenClient(ctx, token) {
  if (token.client) return token.client;
  if (ctx?.oidc?.client?.clientId === token.clientId) return ctx.oidc.client;
  return provider.Client.find(token.clientId);
}

const configuration = {
  clients,
  jwks,
  clockTolerance,
  scopes: ['openid', 'offline_access', ...scopes],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  extraClientMetadata: {
    properties: ['claims', 'access_token_ttl'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
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
  // of JWT access tokens.
  extraTokenClaims: async (ctx, token) => {
    const client = await tokenClient(ctx, token);
    const claims = client?.claims;
    return claims ? structuredClone(claims) : undefined;
  },
  formats: {
    customizers: {
      // oidc-provider writes `sub: accountId || client_id` over the extra
      // claims in JWT access tokens; restore the client's configured sub.
      jwt: async (ctx, token, jwt) => {
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
  },
};

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  fail(`bad configuration: ${err.stack || err}`);
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
