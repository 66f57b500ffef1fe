// Virtual keys → identity. The client's key is looked up by its SHA-256 digest, then the
// digests are compared with timingSafeEqual, so neither the lookup nor the comparison
// leaks the key through timing; a key that verified is then remembered by its text (see
// KeyRing.verified). Provider keys never come from the client.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { KeyConfig, Policies } from '../config/schema.js';
import { errors } from '../errors.js';
import { bearer, sha256 } from './credentials.js';

export interface Identity {
  /** The key's configured name (never the key itself); "anonymous" when no keys are configured. */
  key: string;
  user?: string;
  team?: string;
  config?: KeyConfig;
  /** The team as a metric label: only configured names (a trusted header could otherwise mint series). */
  teamLabel: string;
}

const ANONYMOUS: Identity = { key: 'anonymous', teamLabel: 'none' };

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

type KeyEntry = { digest: Buffer; config: KeyConfig; identity: Identity };

export class KeyRing {
  private readonly byDigest = new Map<string, KeyEntry>();
  /**
   * Keys already verified, by their text: a SHA-256 per request cost 2-3 us. Only keys that
   * matched a configured digest get in, so it holds at most one entry per configured key.
   * Unknown keys are always hashed and compared with timingSafeEqual; a lookup here only
   * compares text when V8's (randomly seeded) string hash of the presented key collides with
   * a configured key's.
   */
  private readonly verified = new Map<string, KeyEntry>();

  constructor(private readonly policies: Pick<Policies, 'keys' | 'server' | 'teams'>) {
    for (const k of policies.keys) {
      const digest = k.key !== undefined ? sha256(k.key) : Buffer.from(k.key_sha256!, 'hex');
      // The identity a key stands for is built once, not per request.
      const identity: Identity = { key: k.name, user: k.user, team: k.team, config: k, teamLabel: k.team ?? 'none' };
      this.byDigest.set(digest.toString('hex'), { digest, config: k, identity });
    }
  }

  get enabled(): boolean {
    return this.byDigest.size > 0;
  }

  /** Throws a 401 GatewayError when keys are configured and the request carries no valid one. */
  identify(headers: IncomingHttpHeaders): Identity {
    let identity = ANONYMOUS;
    if (this.enabled) {
      // Bearer (OpenAI SDKs), api-key (Azure's), x-api-key (Anthropic's): never forwarded upstream.
      const presented = bearer(headers.authorization) ?? header(headers, 'api-key') ?? header(headers, 'x-api-key');
      if (!presented) throw errors.badKey();
      let entry = this.verified.get(presented);
      if (!entry) {
        const digest = sha256(presented);
        entry = this.byDigest.get(digest.toString('hex'));
        if (!entry || !timingSafeEqual(entry.digest, digest)) throw errors.badKey();
        this.verified.set(presented, entry);
      }
      identity = entry.identity;
    }
    if (this.policies.server.trusted_identity_headers) {
      const user = headers['x-gateway-user'];
      const team = headers['x-gateway-team'];
      identity = {
        ...identity,
        ...(typeof user === 'string' && user ? { user } : {}),
        ...(typeof team === 'string' && team ? { team, teamLabel: team in this.policies.teams ? team : 'other' } : {}),
      };
    }
    return identity;
  }
}
