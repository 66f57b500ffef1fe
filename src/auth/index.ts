// Virtual keys → identity. The client's key is looked up by its SHA-256 digest, then the
// digests are compared with timingSafeEqual, so neither the lookup nor the comparison
// leaks the key through timing. Provider keys never come from the client.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { KeyConfig, Policies } from '../config/schema.js';
import { errors } from '../server/errors.js';

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

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m?.[1]?.trim();
}

export class KeyRing {
  private readonly byDigest = new Map<string, { digest: Buffer; config: KeyConfig }>();

  constructor(private readonly policies: Pick<Policies, 'keys' | 'server' | 'teams'>) {
    for (const k of policies.keys) {
      const digest = k.key !== undefined ? sha256(k.key) : Buffer.from(k.key_sha256!, 'hex');
      this.byDigest.set(digest.toString('hex'), { digest, config: k });
    }
  }

  get enabled(): boolean {
    return this.byDigest.size > 0;
  }

  /** Throws a 401 GatewayError when keys are configured and the request carries no valid one. */
  identify(headers: IncomingHttpHeaders): Identity {
    let identity = ANONYMOUS;
    if (this.enabled) {
      const presented = bearer(headers.authorization) ?? (typeof headers['api-key'] === 'string' ? headers['api-key'] : undefined);
      if (!presented) throw errors.badKey();
      const digest = sha256(presented);
      const entry = this.byDigest.get(digest.toString('hex'));
      if (!entry || !timingSafeEqual(entry.digest, digest)) throw errors.badKey();
      const team = entry.config.team;
      identity = { key: entry.config.name, user: entry.config.user, team, config: entry.config, teamLabel: team ?? 'none' };
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
