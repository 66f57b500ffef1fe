// Paths are made canonical before routing (src/server/path.ts), then matched in the one route
// table (src/server/routes.ts); pass-through writes are classed by passthroughRule.
import { describe, expect, it } from 'vitest';
import { normalisePath } from '../../src/server/path.js';
import { matchRoute, shadowsGovernedRoute, ROUTES } from '../../src/server/routes.js';
import { allowedByPolicy, familyOf, passthroughRule } from '../../src/server/passthrough.js';

const canonical = (url: string) => {
  const r = normalisePath(url);
  return r.ok ? r.path + r.query : `refused: ${r.reason}`;
};

describe('normalisePath', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/v1/chat/./completions', '/v1/chat/completions'],
    ['/v1/x/../chat/completions', '/v1/chat/completions'],
    ['/v1/chat/%2e/completions', '/v1/chat/completions'],
    ['/v1/chat/%2E/completions', '/v1/chat/completions'],
    ['/v1/x/%2e%2E/chat/completions', '/v1/chat/completions'],
    ['/v1//chat/completions', '/v1/chat/completions'],
    ['//v1///chat//completions//', '/v1/chat/completions'],
    ['/v1/chat/completions/', '/v1/chat/completions'],
    ['/v1/%63hat/completions', '/v1/chat/completions'],
    ['/v1/./models', '/v1/models'],
    ['/v1/../metrics', '/metrics'],
    ['/v1/files?purpose=batch&a[]=1&a[]=2', '/v1/files?purpose=batch&a[]=1&a[]=2'],
    ['/v1/./files/?x=/../y', '/v1/files?x=/../y'],
    ['/v1/models/meta-llama%2fLlama-3', '/v1/models/meta-llama%2FLlama-3'],
    ['/v1/files/caf%c3%a9', '/v1/files/caf%C3%A9'],
    ['/', '/'],
    ['/V1/chat/completions', '/V1/chat/completions'],
  ])('%s → %s', (url, want) => {
    expect(canonical(url)).toBe(want);
  });

  it.each([
    ['/v1/chat/completions;x=1', 'path parameters'],
    ['/v1/chat;x=1/completions', 'path parameters'],
    ['/v1/chat/%3bx/completions', 'path parameters'],
    ['/../v1/models', 'climbs above the root'],
    ['/v1/../../admin/spend', 'climbs above the root'],
    ['/v1/%2e%2e/%2e%2e/x', 'climbs above the root'],
    ['/v1/chat/%252e/completions', 'encoded %'],
    ['/v1/chat/%zz', 'malformed'],
    ['/v1/chat/%2', 'malformed'],
    ['/v1/chat\\completions', 'backslashes'],
    ['/v1/chat/%00', 'control characters'],
    ['/v1/chat/completions#frag', 'fragment'],
    ['http://evil.example/v1/files', 'origin-form'],
    ['*', 'origin-form'],
    ['/v1/' + 'a'.repeat(9000), 'too long'],
  ])('%s is refused (%s)', (url, why) => {
    const r = normalisePath(url);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toContain(why);
  });
});

describe('the route table', () => {
  it('answers every governed path with its own row, and passes the rest of /v1 through', () => {
    expect(matchRoute('/v1/chat/completions')?.row.governed).toBe('pipeline');
    expect(matchRoute('/v1/embeddings')?.row.governed).toBe('pipeline');
    expect(matchRoute('/v1/responses')?.row.governed).not.toBe('passthrough');
    expect(matchRoute('/v1/responses/resp_1/input_items')?.row.governed).not.toBe('passthrough');
    expect(matchRoute('/v1/messages/count_tokens')?.row.governed).not.toBe('passthrough');
    expect(matchRoute('/v1/models')?.row.governed).toBe('key');
    expect(matchRoute('/v1/models/org/model-a')?.params).toEqual({ id: 'org/model-a' });
    expect(matchRoute('/v1/models/org%2Fmodel-a')?.params).toEqual({ id: 'org/model-a' });
    expect(matchRoute('/v1/files/file-1/content')?.row.governed).toBe('passthrough');
    expect(matchRoute('/admin/circuits/m/b')?.params).toEqual({ rest: 'm/b' });
    expect(matchRoute('/admin/nope')?.row.governed).toBe('admin');
    expect(matchRoute('/nope')).toBeUndefined();
    expect(() => matchRoute('/v1/models/%FF')).toThrow(/UTF-8/);
    expect(matchRoute('/V1/chat/completions')).toBeUndefined();
  });

  it('lists the allowed methods of a row (the 405 allow header)', () => {
    expect(matchRoute('/v1/chat/completions')?.allow).toEqual(['POST', 'GET']);
    expect(matchRoute('/v1/completions')?.allow).toEqual(['POST']);
  });

  it('a path naming a governed route in another case is never passed through', () => {
    expect(shadowsGovernedRoute('/v1/Chat/Completions')).toBe(true);
    expect(shadowsGovernedRoute('/v1/EMBEDDINGS')).toBe(true);
    expect(shadowsGovernedRoute('/v1/Responses')).toBe(true);
    expect(shadowsGovernedRoute('/v1/files/File-ABC')).toBe(false);
  });

  it('every row has a handler for some method, and no two rows share a pattern', () => {
    const patterns = ROUTES.map((r) => r.pattern);
    expect(new Set(patterns).size).toBe(patterns.length);
    for (const r of ROUTES) expect(Object.keys(r.methods).length).toBeGreaterThan(0);
  });
});

describe('pass-through rule', () => {
  const restricted = true;
  it('reads and deletes pass for every key', () => {
    for (const m of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) expect(passthroughRule(m, '/v1/batches', restricted, [])).toBeUndefined();
  });

  it('spending writes are refused for restricted keys only, unless allowed', () => {
    for (const p of [
      '/v1/batches',
      '/v1/images/generations',
      '/v1/audio/speech',
      '/v1/fine_tuning/jobs',
      '/v1/vector_stores',
      '/v1/realtime/sessions',
      '/v1/anything/new',
    ]) {
      expect(passthroughRule('POST', p, restricted, [])?.code).toBe('passthrough_not_allowed');
      expect(passthroughRule('POST', p, false, [])).toBeUndefined();
    }
    expect(passthroughRule('POST', '/v1/batches', restricted, ['/v1/batches'])).toBeUndefined();
    expect(passthroughRule('POST', '/v1/images/generations', restricted, ['/v1/images'])).toBeUndefined();
    expect(passthroughRule('POST', '/v1/images_x', restricted, ['/v1/images'])?.code).toBe('passthrough_not_allowed');
    expect(passthroughRule('PUT', '/v1/batches', restricted, [])?.status).toBe(403);
  });

  it('free writes pass for every key', () => {
    for (const p of [
      '/v1/moderations',
      '/v1/files',
      '/v1/uploads',
      '/v1/uploads/u1/parts',
      '/v1/chat/completions/cc-1',
      '/v1/batches/b1/cancel',
    ]) {
      expect(passthroughRule('POST', p, restricted, [])).toBeUndefined();
    }
  });

  it('inference under another name is refused for everyone', () => {
    for (const p of ['/v1/deployments/d/chat/completions', '/v1/engines/e/completions', '/v1/engines/e/embeddings', '/v1/x/responses']) {
      expect(passthroughRule('POST', p, false, ['/v1/deployments', '/v1/engines', '/v1/x'])?.status).toBe(404);
    }
  });

  it('families are a bounded set', () => {
    expect(familyOf('/v1/files/f1/content')).toBe('files');
    expect(familyOf('/v1/whatever/x')).toBe('other');
    expect(allowedByPolicy('/v1/batches/b1', ['/v1/batches'])).toBe(true);
  });
});
