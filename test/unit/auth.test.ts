import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bearer, sameSecret } from '../../src/auth/credentials.js';
import { KeyRing } from '../../src/auth/index.js';
import { parsePolicies } from '../../src/config/load.js';

const policies = parsePolicies(
  `
backends: { sim: { type: simulator } }
models: { m: { deployments: [{ backend: sim }] } }
teams: { t1: {} }
keys:
  - { key: sk-app-1, name: app, user: u1, team: t1 }
  - { key_sha256: ${createHash('sha256').update('sk-hashed').digest('hex')}, name: hashed }
`,
  't.yaml',
);

describe('KeyRing.identify', () => {
  const ring = new KeyRing(policies);
  it('accepts the key in any usual Bearer spelling and in api-key', () => {
    for (const authorization of ['Bearer sk-app-1', 'bearer sk-app-1', 'Bearer   sk-app-1', '  Bearer sk-app-1  ', 'BEARER\tsk-app-1']) {
      expect(ring.identify({ authorization })).toMatchObject({ key: 'app', user: 'u1', team: 't1', teamLabel: 't1' });
    }
    expect(ring.identify({ 'api-key': 'sk-app-1' }).key).toBe('app');
    expect(ring.identify({ authorization: 'Bearer sk-hashed' })).toMatchObject({ key: 'hashed', teamLabel: 'none' });
  });
  it('a verified key is remembered; a wrong key after it is still refused', () => {
    const fresh = new KeyRing(policies);
    for (let i = 0; i < 3; i++) expect(fresh.identify({ authorization: 'Bearer sk-app-1' }).key).toBe('app');
    expect(() => fresh.identify({ authorization: 'Bearer sk-app-1 ' + 'x' })).toThrow(expect.objectContaining({ status: 401 }));
    expect(() => fresh.identify({ authorization: 'Bearer sk-app-' })).toThrow(expect.objectContaining({ status: 401 }));
  });
  it('refuses a wrong, partial, padded-inside or missing key with 401 invalid_api_key', () => {
    for (const authorization of [
      'Bearer sk-app-2',
      'Bearer sk-app-1x',
      'Bearer sk-app',
      'Basic sk-app-1',
      'sk-app-1',
      'Bearer ',
      'Bearer sk-app-1 extra',
    ]) {
      expect(() => ring.identify({ authorization })).toThrow(expect.objectContaining({ status: 401, code: 'invalid_api_key' }));
    }
    expect(() => ring.identify({})).toThrow(expect.objectContaining({ status: 401 }));
  });
});

describe('credentials: bearer() and sameSecret()', () => {
  it('bearer() reads every usual spelling and nothing else', () => {
    for (const h of ['Bearer tok', 'bearer tok', 'BEARER   tok', '  Bearer tok  ', 'Bearer\ttok']) expect(bearer(h)).toBe('tok');
    for (const h of [undefined, '', 'Bearer', 'Bearer ', 'Basic tok', 'tok', 'Bearertok']) expect(bearer(h)).toBeUndefined();
  });

  it('sameSecret() compares secrets of any length', () => {
    expect(sameSecret('s3cret', 's3cret')).toBe(true);
    expect(sameSecret('s3cret', 's3cre')).toBe(false);
    expect(sameSecret('', 'x')).toBe(false);
  });
});
