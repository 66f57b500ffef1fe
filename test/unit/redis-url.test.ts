import { describe, expect, it } from 'vitest';
import { admissionPrefix, hasHashTag, parseRedisUrl } from '../../src/admission/redis-connect.js';
import { policiesSchema } from '../../src/config/schema.js';

describe('redis_url forms', () => {
  it('redis:// and rediss:// are one Redis, passed to ioredis as written', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6379/2')).toEqual({ kind: 'single', url: 'redis://127.0.0.1:6379/2' });
    expect(parseRedisUrl('rediss://u:p@h:6380').kind).toBe('single');
  });

  it('redis+cluster:// lists seed nodes, with credentials and TLS', () => {
    expect(parseRedisUrl('rediss+cluster://me:s%40cret@a:7000,b,[::1]:7002')).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'a', port: 7000 },
        { host: 'b', port: 6379 },
        { host: '::1', port: 7002 },
      ],
      tls: true,
      username: 'me',
      password: 's@cret',
    });
    expect(parseRedisUrl('redis+cluster://:pw@a:1')).toMatchObject({ username: undefined, password: 'pw', tls: false });
  });

  it('redis+sentinel:// names the sentinels, the master and the db', () => {
    expect(parseRedisUrl('redis+sentinel://:pw@s1,s2:26380/mymaster/3?sentinel_password=sp')).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
      ],
      name: 'mymaster',
      db: 3,
      tls: false,
      username: undefined,
      password: 'pw',
      sentinelUsername: undefined,
      sentinelPassword: 'sp',
    });
  });

  it.each([
    ['http://h:1', /expected redis/],
    ['redis+cluster://h:1/2', /no path/],
    ['redis+cluster://h:99999', /bad host:port/],
    ['redis+sentinel://s1:26379', /master name/],
    ['redis+sentinel://s1/m/x', /bad db/],
    ['redis+sentinel://s1/m?foo=1', /unknown parameter/],
  ])('%s is refused', (url, msg) => {
    expect(() => parseRedisUrl(url)).toThrow(msg);
  });

  it('the policies schema refuses a bad redis_url with a message', () => {
    expect(() => policiesSchema.parse({ state: { store: 'redis', redis_url: 'redis+cluster://h:1/2' } })).toThrow(/no path/);
  });
});

describe('admission key prefix', () => {
  it('is one hash tag on a cluster, as written elsewhere or when it already has a tag', () => {
    const cluster = parseRedisUrl('redis+cluster://a:1');
    expect(admissionPrefix('llmgw:', cluster)).toBe('{llmgw:}');
    expect(admissionPrefix('{gw}:', cluster)).toBe('{gw}:');
    expect(admissionPrefix('a{}b:', cluster)).toBe('{a{}b:}');
    expect(admissionPrefix('llmgw:', parseRedisUrl('redis://h'))).toBe('llmgw:');
    expect(admissionPrefix('llmgw:', parseRedisUrl('redis+sentinel://s/m'))).toBe('llmgw:');
    expect(hasHashTag('x{y}z')).toBe(true);
    expect(hasHashTag('x{}y}')).toBe(false);
  });
});
