// Response-id → deployment affinity for the Responses API. A stored response (and the
// conversation that continues it through previous_response_id) lives on the backend that
// created it: its follow-ups (GET, DELETE, cancel, input_items, previous_response_id) must go
// back there, not to whichever deployment the weights pick. Ids are recorded the moment they
// are seen: from `response.created` when streamed, the body's `id` when not.
//
// memory store: an LRU with a TTL in this process (bounded by `max`). redis store: the same
// LRU in front of Redis keys `<redis_prefix>resp:<id>` with the same TTL, so every gateway of
// a fleet sends follow-ups to the right place. Redis trouble never fails a request: a write
// that fails is dropped (logged once), a read that fails or times out is a miss.
import { LRUCache } from 'lru-cache';
import type { Cluster, Redis } from 'ioredis';
import { connectRedis, parseRedisUrl } from '../admission/redis-connect.js';
import type { Policies } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';

export interface AffinityEntry {
  /** The route (client-facing model name) that served the response. */
  model: string;
  /** The backend that holds it. */
  backend: string;
}

export interface AffinitySettings {
  ttlMs: number;
  max: number;
  redis?: { url: string; prefix: string };
}

/** How long a Redis read may take before it counts as a miss. */
const READ_TIMEOUT_MS = 250;
/** Ids are opaque strings; anything longer is not a real response id (and must not size our keys). */
const MAX_ID = 256;

export class ResponseAffinity {
  /**
   * Made on the first response recorded: lru-cache allocates its index arrays for `max`
   * entries up front (~4 MiB at the default 100,000), which a gateway that never serves the
   * Responses API should not carry.
   */
  private local: LRUCache<string, AffinityEntry> | undefined;
  private readonly redis: Redis | Cluster | undefined;
  private readonly prefix: string;
  private warned = false;

  constructor(
    private readonly s: AffinitySettings,
    private readonly logger?: Logger,
  ) {
    this.prefix = s.redis ? `${s.redis.prefix}resp:` : '';
    if (s.redis) {
      // Commands made before the connection is ready wait for it (the first responses of a
      // starting gateway must be recorded too); with no retries per request, the queue is
      // failed at the first failed reconnect, so an outage cannot grow it.
      // Connected on first use: a gateway that never sees Responses traffic opens no connection.
      this.redis = connectRedis(parseRedisUrl(s.redis.url), {
        lazyConnect: true,
        enableOfflineQueue: true,
        maxRetriesPerRequest: 0,
        retryStrategy: (n) => Math.min(100 * n, 1_000),
        enableAutoPipelining: true,
      });
      this.redis.on('error', (err: Error) => this.warn('response affinity: Redis unreachable', err));
    }
  }

  static fromPolicies(p: Policies, logger?: Logger): ResponseAffinity {
    const st = p.state;
    return new ResponseAffinity(
      {
        ttlMs: st.response_affinity_ttl_s * 1000,
        max: st.response_affinity_max,
        redis: st.store === 'redis' ? { url: st.redis_url, prefix: st.redis_prefix } : undefined,
      },
      logger,
    );
  }

  private warn(msg: string, err: Error): void {
    if (this.warned) return;
    this.warned = true;
    this.logger?.warn({ err: err.message }, msg);
  }

  private cache(): LRUCache<string, AffinityEntry> {
    return (this.local ??= new LRUCache<string, AffinityEntry>({ max: this.s.max, ttl: this.s.ttlMs, ttlAutopurge: false }));
  }

  remember(id: string, entry: AffinityEntry): void {
    if (id.length === 0 || id.length > MAX_ID) return;
    this.cache().set(id, entry);
    if (this.redis) {
      this.redis
        .set(this.prefix + id, JSON.stringify(entry), 'PX', this.s.ttlMs)
        .catch((e: Error) => this.warn('response affinity: Redis write failed', e));
    }
  }

  /** Where the response lives; undefined when this gateway (or the fleet) has not seen it or it expired. */
  async lookup(id: string): Promise<AffinityEntry | undefined> {
    if (id.length === 0 || id.length > MAX_ID) return undefined;
    const hit = this.local?.get(id);
    if (hit || !this.redis) return hit;
    let timer: NodeJS.Timeout | undefined;
    try {
      const text = await Promise.race([
        this.redis.get(this.prefix + id),
        new Promise<null>((r) => (timer = setTimeout(() => r(null), READ_TIMEOUT_MS))),
      ]);
      if (!text) return undefined;
      const e = JSON.parse(text) as Partial<AffinityEntry>;
      if (typeof e.model !== 'string' || typeof e.backend !== 'string') return undefined;
      const entry = { model: e.model, backend: e.backend };
      this.cache().set(id, entry);
      return entry;
    } catch (e) {
      this.warn('response affinity: Redis read failed', e as Error);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A deleted response: its follow-ups have nowhere to go. */
  forget(id: string): void {
    this.local?.delete(id);
    this.redis?.del(this.prefix + id).catch((e: Error) => this.warn('response affinity: Redis write failed', e));
  }

  get size(): number {
    return this.local?.size ?? 0;
  }

  async close(): Promise<void> {
    if (!this.redis) return;
    if (this.redis.status === 'wait' || this.redis.status === 'end') return this.redis.disconnect();
    await this.redis.quit().catch(() => this.redis?.disconnect());
  }
}
