// The error table in docs/http-api.md is the catalogue's documentation: every code that
// src/errors.ts can raise appears in it, so a new error cannot ship undocumented.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const catalogue = readFileSync(new URL('src/errors.ts', root), 'utf8');
const doc = readFileSync(new URL('docs/http-api.md', root), 'utf8');

/** The literal codes of `new GatewayError(status, type, 'code', ...)` in the catalogue. */
function catalogueCodes(): string[] {
  const codes = [...catalogue.matchAll(/new GatewayError\(\s*[^,]+,\s*'[^']+',\s*'([a-z0-9_]+)'/g)].map((m) => m[1]!);
  return [...new Set(codes)].sort();
}

/** Every `code` in backticks in the "### Errors" section's table rows. */
function documentedCodes(): Set<string> {
  const start = doc.indexOf('### Errors');
  const end = doc.indexOf('\n## ', start);
  const rows = doc
    .slice(start, end === -1 ? undefined : end)
    .split('\n')
    .filter((l) => l.startsWith('|'));
  return new Set(rows.flatMap((r) => [...r.matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1]!)));
}

describe('docs/http-api.md error table', () => {
  it('lists every code in src/errors.ts', () => {
    const codes = catalogueCodes();
    expect(codes.length).toBeGreaterThan(20); // the parser still reads the catalogue
    const table = documentedCodes();
    expect(codes.filter((c) => !table.has(c))).toEqual([]);
  });
});
