// A value that validates against a JSON Schema, for structured outputs (`response_format`
// json_schema, the Responses API's `text.format`) and tool-call arguments. Deterministic, so a
// test can predict it: strings are "hello", numbers 42, booleans true, enums their first value,
// each clamped into the schema's bounds.
//
// The schema is the client's and untrusted: recursion depth and the number of values built are
// bounded, $refs resolve only inside the schema itself, and past the bounds a value is kept
// as small as the schema allows (optional properties left out, arrays at their minItems).

const MAX_DEPTH = 12;
const MAX_NODES = 2000;
// Past this, even minItems and required properties give way: a schema can demand any size.
const HARD_NODES = 20_000;
const HARD_DEPTH = 64;
const MAX_STRING = 256;
const DEFAULT_ITEMS = 2;

type Schema = Record<string, unknown>;

interface Budget {
  root: unknown;
  nodes: number;
}

const FORMATS: Record<string, string> = {
  'date-time': '2024-01-01T00:00:00Z',
  date: '2024-01-01',
  time: '00:00:00',
  duration: 'P1D',
  email: 'hello@example.com',
  'idn-email': 'hello@example.com',
  hostname: 'example.com',
  'idn-hostname': 'example.com',
  ipv4: '127.0.0.1',
  ipv6: '::1',
  uri: 'https://example.com/',
  'uri-reference': 'https://example.com/',
  iri: 'https://example.com/',
  url: 'https://example.com/',
  uuid: '00000000-0000-4000-8000-000000000000',
};

const isObj = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);
/** Array.isArray without its `any[]`: a schema's lists hold unknown JSON. */
const isList = (v: unknown): v is unknown[] => Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A JSON value valid under `schema` (best effort for keywords a generator cannot honour, e.g. `pattern`). */
export function sampleFromSchema(schema: unknown): unknown {
  return gen(schema, { root: schema, nodes: 0 }, 0);
}

/** `#/$defs/x`-style pointers into the root schema; anything else (remote refs) resolves to {}. */
function resolveRef(ref: string, root: unknown): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return {};
  let cur: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObj(cur) && !Array.isArray(cur)) return {};
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur ?? {};
}

function gen(schema: unknown, b: Budget, depth: number): unknown {
  b.nodes++;
  if (depth > HARD_DEPTH) return null;
  if (schema === true || schema === undefined) return 'hello';
  if (!isObj(schema)) return null;
  // Out of budget: keep the value minimal rather than fail.
  const tight = depth >= MAX_DEPTH || b.nodes >= MAX_NODES;
  if (typeof schema.$ref === 'string') {
    // A recursive schema that is out of budget still has to yield something: its smallest form.
    return depth >= MAX_DEPTH * 2 || b.nodes >= HARD_NODES ? null : gen(resolveRef(schema.$ref, b.root), b, depth + 1);
  }
  if ('const' in schema) return schema.const;
  if (isList(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  for (const k of ['anyOf', 'oneOf'] as const) {
    const alts = schema[k];
    if (isList(alts) && alts.length > 0) {
      // The first alternative, unless out of budget and one of them is null.
      const nullable = alts.find((a) => isObj(a) && a.type === 'null');
      const pick = tight && nullable ? nullable : (alts.find((a) => !(isObj(a) && a.type === 'null')) ?? alts[0]);
      return gen(pick, b, depth + 1);
    }
  }
  if (isList(schema.allOf) && schema.allOf.length > 0) {
    const merged: Schema = {};
    const properties: Schema = {};
    const required: unknown[] = [];
    for (const part of schema.allOf.map((p) => (isObj(p) && typeof p.$ref === 'string' ? resolveRef(p.$ref, b.root) : p))) {
      if (!isObj(part)) continue;
      Object.assign(merged, part);
      if (isObj(part.properties)) Object.assign(properties, part.properties);
      if (isList(part.required)) required.push(...part.required);
    }
    const { allOf: _a, ...rest } = schema;
    return gen(
      { ...merged, ...rest, properties: { ...properties, ...(isObj(rest.properties) ? rest.properties : {}) }, required },
      b,
      depth + 1,
    );
  }

  let type = schema.type;
  if (Array.isArray(type)) {
    const nonNull = type.filter((t) => t !== 'null');
    type = tight && type.includes('null') ? 'null' : (nonNull[0] ?? 'null');
  }
  if (type === undefined)
    type = isObj(schema.properties) ? 'object' : schema.items !== undefined || schema.prefixItems !== undefined ? 'array' : 'string';

  switch (type) {
    case 'null':
      return null;
    case 'boolean':
      return true;
    case 'integer':
    case 'number':
      return number(schema, type === 'integer');
    case 'string':
      return string(schema);
    case 'array':
      return array(schema, b, depth, tight);
    case 'object':
      return object(schema, b, depth, tight);
    default:
      return 'hello';
  }
}

function number(s: Schema, integer: boolean): number {
  let lo = num(s.minimum) ?? -Infinity;
  let hi = num(s.maximum) ?? Infinity;
  // Draft 6+ gives exclusive bounds as numbers; draft 4 as booleans on minimum/maximum.
  const exLo = num(s.exclusiveMinimum) ?? (s.exclusiveMinimum === true ? num(s.minimum) : undefined);
  const exHi = num(s.exclusiveMaximum) ?? (s.exclusiveMaximum === true ? num(s.maximum) : undefined);
  const step = num(s.multipleOf) && (s.multipleOf as number) > 0 ? (s.multipleOf as number) : integer ? 1 : 0;
  const eps = step || 1e-6;
  if (exLo !== undefined) lo = Math.max(lo, exLo + eps);
  if (exHi !== undefined) hi = Math.min(hi, exHi - eps);
  let v = Math.min(Math.max(42, lo), hi);
  if (step) {
    // The multiple of `step` nearest 42 within [lo, hi].
    const up = Math.ceil(v / step) * step;
    const down = Math.floor(v / step) * step;
    v = up <= hi ? up : down >= lo ? down : v;
    v = Number(v.toPrecision(12)); // 0.1 * 3 → 0.3, not 0.30000000000000004
  }
  if (integer) v = Math.ceil(v) <= hi ? Math.ceil(v) : Math.floor(v);
  return Number.isFinite(v) ? v : 0;
}

function string(s: Schema): string {
  let v = typeof s.format === 'string' && FORMATS[s.format] ? FORMATS[s.format]! : 'hello';
  const min = Math.min(num(s.minLength) ?? 0, MAX_STRING);
  const max = num(s.maxLength);
  while (v.length < min) v += 'o';
  if (max !== undefined && v.length > max) v = v.slice(0, Math.max(0, max));
  return v;
}

function array(s: Schema, b: Budget, depth: number, tight: boolean): unknown[] {
  const out: unknown[] = [];
  const prefix = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : [];
  const min = Math.max(0, Math.floor(num(s.minItems) ?? 0));
  const max = Math.max(0, Math.floor(num(s.maxItems) ?? Infinity));
  // Tuples: their listed items; lists: a couple (or what minItems asks), bounded by the budget.
  let want = prefix.length > 0 ? Math.max(prefix.length, min) : tight ? min : Math.max(min, DEFAULT_ITEMS);
  want = Math.min(want, max, MAX_NODES);
  const rest = Array.isArray(s.items) ? undefined : s.items;
  for (let i = 0; i < want; i++) {
    if ((i >= min && b.nodes >= MAX_NODES) || b.nodes >= HARD_NODES) break;
    out.push(gen(i < prefix.length ? prefix[i] : rest, b, depth + 1));
  }
  return out;
}

function object(s: Schema, b: Budget, depth: number, tight: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const props = isObj(s.properties) ? s.properties : {};
  const required = new Set(Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === 'string') : []);
  for (const [key, sub] of Object.entries(props)) {
    // Every property when there is room (a strict schema lists them all as required anyway).
    if (tight && !required.has(key)) continue;
    put(out, key, gen(sub, b, depth + 1));
  }
  // Required names without a property schema still need a value.
  for (const key of required) if (!Object.hasOwn(out, key)) put(out, key, 'hello');
  return out;
}

/** Property names come from the client: "__proto__" must become a property, not a prototype. */
function put(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}
