// `state.redis_url` forms and the connection each one opens:
//   redis://[user:pass@]host:port[/db]                  one Redis (ioredis' own URL parsing; rediss:// = TLS)
//   redis+cluster://[user:pass@]h1:p1,h2:p2,...         Redis / Valkey Cluster: any reachable nodes, the rest is discovered
//   redis+sentinel://[user:pass@]s1:p1,s2:p2/master[/db][?sentinel_password=...]
//                                                       the master that the sentinels name (followed over failovers)
// `rediss+cluster://` and `rediss+sentinel://` speak TLS to the data nodes. Credentials are
// percent-decoded; they are the data nodes' (sentinels get sentinel_username/_password).
import { createRequire } from 'node:module';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

export type RedisTarget =
  | { kind: 'single'; url: string }
  | { kind: 'cluster'; nodes: HostPort[]; tls: boolean; username?: string; password?: string }
  | {
      kind: 'sentinel';
      sentinels: HostPort[];
      name: string;
      db: number;
      tls: boolean;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
    };

export interface HostPort {
  host: string;
  port: number;
}

const MULTI = /^(rediss?)\+(cluster|sentinel):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?(?:\?([^#]*))?$/;

/** Parses a redis_url; throws an Error saying what is wrong (the config schema shows it). */
export function parseRedisUrl(url: string): RedisTarget {
  if (/^rediss?:\/\//.test(url)) return { kind: 'single', url };
  const m = MULTI.exec(url);
  if (!m) throw new Error('expected redis://, rediss://, redis+cluster://h1:p1,h2:p2 or redis+sentinel://s1:p1,s2:p2/master');
  const [, scheme, kind, cred, hostList, path, query] = m;
  const tls = scheme === 'rediss';
  let username: string | undefined;
  let password: string | undefined;
  if (cred) {
    const i = cred.indexOf(':');
    const u = decodeURIComponent(i < 0 ? cred : cred.slice(0, i));
    username = u || undefined;
    password = i < 0 ? undefined : decodeURIComponent(cred.slice(i + 1));
  }
  const hosts = hostList!.split(',').map((h) => hostPort(h, kind === 'sentinel' ? 26379 : 6379));
  if (kind === 'cluster') {
    if (path && path !== '/') throw new Error('redis+cluster:// takes no path (a cluster has only db 0)');
    return { kind: 'cluster', nodes: hosts, tls, username, password };
  }
  const parts = (path ?? '').split('/').filter(Boolean);
  if (parts.length < 1 || parts.length > 2)
    throw new Error('redis+sentinel:// needs the master name as its path: redis+sentinel://s1:26379,s2:26379/mymaster[/db]');
  const db = parts[1] === undefined ? 0 : Number(parts[1]);
  if (!Number.isInteger(db) || db < 0) throw new Error(`redis+sentinel://: bad db number "${parts[1]}"`);
  const q = new URLSearchParams(query ?? '');
  for (const k of q.keys())
    if (k !== 'sentinel_username' && k !== 'sentinel_password') throw new Error(`redis+sentinel://: unknown parameter "${k}"`);
  return {
    kind: 'sentinel',
    sentinels: hosts,
    name: decodeURIComponent(parts[0]!),
    db,
    tls,
    username,
    password,
    sentinelUsername: q.get('sentinel_username') ?? undefined,
    sentinelPassword: q.get('sentinel_password') ?? undefined,
  };
}

function hostPort(s: string, defaultPort: number): HostPort {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(s.trim());
  const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
  if (!m || port < 1 || port > 65535) throw new Error(`bad host:port "${s}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * The key prefix the admission scripts use. A script touches many keys, which Redis Cluster
 * accepts only if they all hash to one slot: in cluster mode the prefix becomes one hash tag
 * (`llmgw:` → `{llmgw:}`), unless it already has one. A plain Redis or a sentinel-managed
 * master keeps the prefix as written (no key moves on upgrade).
 */
export function admissionPrefix(prefix: string, target: RedisTarget): string {
  if (target.kind !== 'cluster' || hasHashTag(prefix)) return prefix;
  return `{${prefix}}`;
}

/** Redis' rule: the first '{' and the first '}' after it, with something between them. */
export function hasHashTag(key: string): boolean {
  const i = key.indexOf('{');
  if (i < 0) return false;
  const j = key.indexOf('}', i + 1);
  return j > i + 1;
}

/** Connection options shared by every form (per node for a cluster). */
export type CommonOptions = Pick<
  RedisOptions,
  'enableOfflineQueue' | 'maxRetriesPerRequest' | 'connectTimeout' | 'retryStrategy' | 'lazyConnect' | 'enableAutoPipelining'
>;

/** Opens the connection the target names; ioredis is loaded only here (a memory-store gateway never pays for it). */
export function connectRedis(target: RedisTarget, o: CommonOptions): Redis | Cluster {
  const io = createRequire(import.meta.url)('ioredis') as typeof import('ioredis');
  if (target.kind === 'single') return new io.Redis(target.url, o);
  const tls = target.tls ? {} : undefined;
  if (target.kind === 'sentinel') {
    return new io.Redis({
      ...o,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      username: target.username,
      password: target.password,
      sentinelUsername: target.sentinelUsername,
      sentinelPassword: target.sentinelPassword,
      tls,
      // A sentinel that cannot be reached is retried the same way as a lost master.
      sentinelRetryStrategy: (n: number) => {
        const d = o.retryStrategy?.(n);
        return typeof d === 'number' ? d : null;
      },
    });
  }
  const { enableOfflineQueue, lazyConnect, enableAutoPipelining, retryStrategy, ...node } = o;
  const c: ClusterOptions = {
    enableOfflineQueue,
    lazyConnect,
    enableAutoPipelining,
    clusterRetryStrategy: retryStrategy ? (times: number) => retryStrategy(times) : undefined,
    redisOptions: { ...node, username: target.username, password: target.password, tls },
  };
  return new io.Cluster(target.nodes, c);
}
