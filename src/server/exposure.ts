// Who can reach the gateway, and what it tells ops about it.
//
// A sidecar listens on loopback. Bound to another address with no virtual keys, anyone who
// can reach the pod spends on the provider key: the gateway says so loudly at start and after
// every reload (it cannot know what a NetworkPolicy in front of it allows).
// server.allowed_hosts: requests must name an expected Host (a browser page on another site
// reaching a loopback gateway through DNS rebinding names its own host, not ours).
import type { Policies } from '../config/schema.js';
import { errors, type GatewayError } from '../errors.js';

/** True for addresses only this machine reaches: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/** What is exposed when listening on `host` with `policies`: one sentence per problem (empty when none). */
export function exposureProblems(host: string, policies: Policies): string[] {
  if (isLoopback(host)) return [];
  const problems: string[] = [];
  const where = `listening on ${host} (not loopback)`;
  if (policies.keys.length === 0) {
    problems.push(
      `${where} with no virtual keys: anyone who can reach this address uses the provider keys. Configure keys, or listen on 127.0.0.1.`,
    );
  }
  if (policies.server.trusted_identity_headers) {
    problems.push(
      `${where} with server.trusted_identity_headers: any client can claim a user or team through x-gateway-user / x-gateway-team.`,
    );
  }
  return problems;
}

/** Paths answered whatever the Host: kubelet probes and Prometheus come by pod IP, and these spend nothing. */
export const HOST_EXEMPT: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/** The host part of a Host header: lower case, port and IPv6 brackets removed. */
function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

/**
 * Undefined when the request's Host is acceptable, else the 421 to answer. No allowed_hosts
 * configured: every Host is. Entries are names or addresses without port ("gateway.local",
 * "127.0.0.1", "::1"); a leading "*." matches any subdomain.
 */
export function checkHost(header: string | undefined, allowed: readonly string[] | undefined): GatewayError | undefined {
  if (!allowed) return undefined;
  const name = header ? hostName(header) : '';
  for (const a of allowed) {
    const entry = a.toLowerCase();
    if (entry === name) return undefined;
    if (entry.startsWith('*.') && name.endsWith(entry.slice(1)) && name.length > entry.length - 1) return undefined;
  }
  return errors.hostNotAllowed(name);
}
