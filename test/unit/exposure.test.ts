import { describe, expect, it } from 'vitest';
import { parsePolicies } from '../../src/config/load.js';
import { checkHost, exposureProblems, isLoopback } from '../../src/server/exposure.js';
import { scrubSecrets, secretsOf } from '../../src/upstream/scrub.js';

const base = `
backends: { sim: { type: simulator } }
models: { m: { deployments: [{ backend: sim }] } }
`;

describe('exposure at start', () => {
  it('listening beyond loopback with no keys is reported; loopback or keys are not', () => {
    const open = parsePolicies(base, 't.yaml', {});
    const keyed = parsePolicies(base + 'keys: [{ key: k, name: n }]\n', 't.yaml', {});
    expect(exposureProblems('0.0.0.0', open)).toHaveLength(1);
    expect(exposureProblems('::', open)[0]).toMatch(/no virtual keys/);
    expect(exposureProblems('127.0.0.1', open)).toEqual([]);
    expect(exposureProblems('localhost', open)).toEqual([]);
    expect(exposureProblems('::1', open)).toEqual([]);
    expect(exposureProblems('0.0.0.0', keyed)).toEqual([]);
    expect(isLoopback('127.1.2.3')).toBe(true);
    expect(isLoopback('10.0.0.1')).toBe(false);
  });
});

describe('allowed hosts', () => {
  it('matches names without port, IPv6 in brackets and *. subdomains; refuses the rest with a 421', () => {
    const allowed = ['gateway.local', '127.0.0.1', '::1', '*.svc.cluster.local'];
    expect(checkHost('gateway.local:4000', allowed)).toBeUndefined();
    expect(checkHost('GATEWAY.LOCAL', allowed)).toBeUndefined();
    expect(checkHost('[::1]:4000', allowed)).toBeUndefined();
    expect(checkHost('llm.ns.svc.cluster.local', allowed)).toBeUndefined();
    expect(checkHost('svc.cluster.local', allowed)?.status).toBe(421);
    expect(checkHost('evil.example:4000', allowed)?.code).toBe('host_not_allowed');
    expect(checkHost(undefined, allowed)?.status).toBe(421);
    expect(checkHost('anything', undefined)).toBeUndefined();
  });
});

describe('secret scrubbing', () => {
  it('redacts whole secrets, quoted prefixes of 12+ characters, and Bearer values by their key', () => {
    const secrets = secretsOf(['sk-abcdefghijklmnopqrstuvwxyz', 'Bearer sk-abcdefghijklmnopqrstuvwxyz', '2024-01-01', undefined]);
    expect(secrets).toEqual(['sk-abcdefghijklmnopqrstuvwxyz', '2024-01-01']);
    expect(scrubSecrets('key sk-abcdefghijklmnopqrstuvwxyz is bad', secrets)).toBe('key [redacted] is bad');
    expect(scrubSecrets('key sk-abcdefghijklm... is bad', secrets)).toBe('key [redacted]... is bad');
    expect(scrubSecrets('key sk-abc is short', secrets)).toBe('key sk-abc is short');
    expect(scrubSecrets('x sk-abcdefghijklmnopqrstuvwxyz y sk-abcdefghijklmnopqrstuvwxyz', secrets)).toBe('x [redacted] y [redacted]');
  });
});
