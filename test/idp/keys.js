// Signing key generation for the test IdP.
//
//   node keys.js > keys.json   prints a fresh private JWKS (one RSA 2048 key
//                              for RS256, one EC P-256 key for ES256); start
//                              the server with IDP_KEYS=keys.json, and restart
//                              it with another such file to rotate keys.

import * as crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

// RFC 7638 JWK thumbprint.
export function thumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

export function generateJWKS() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rsa-${thumbprint(rsa).slice(0, 16)}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `ec-${thumbprint(ec).slice(0, 16)}`, alg: 'ES256', use: 'sig' },
    ],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(generateJWKS(), null, 2)}\n`);
}
