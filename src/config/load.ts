// Reads policies.yaml: YAML → ${VAR} interpolation → schema validation.
// Errors name the field path and the line, so `llm-gateway check` output can be
// acted on without opening the schema.
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, isNode, isScalar, visit, type Document, type Node } from 'yaml';
import { policiesSchema, type Policies } from './schema.js';

export class PolicyError extends Error {
  readonly code = 'GW_POLICY_INVALID';
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid policies\n  ${problems.join('\n  ')}`);
  }
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces ${VAR} and ${VAR:-default} inside string scalars only, so a value can never inject
 * YAML structure. Records, per scalar, the variables that were unset in it: an invalid field
 * is then blamed on its own variables, not on every unset one in the file.
 */
function interpolate(doc: Document, env: NodeJS.ProcessEnv, missing: Map<Node, string[]>): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      let unset: string[] | undefined;
      node.value = node.value.replace(VAR, (_m, name: string, fallback: string | undefined) => {
        const v = env[name];
        if (v !== undefined && v !== '') return v;
        if (fallback !== undefined) return fallback;
        unset ??= [];
        if (!unset.includes(name)) unset.push(name);
        return '';
      });
      if (unset) missing.set(node, unset);
    },
  });
}

/** The unset variables used by the value at `path` (a scalar, or every scalar inside a map or list). */
function unsetVarsAt(doc: Document, path: PropertyKey[], missing: Map<Node, string[]>): string[] {
  if (missing.size === 0) return [];
  const node: unknown = doc.getIn(path as unknown[], true);
  if (!isNode(node)) return [];
  const out = new Set<string>();
  const add = (n: Node) => missing.get(n)?.forEach((v) => out.add(v));
  if (isScalar(node)) add(node);
  else visit(node, { Scalar: (_k, n) => add(n) });
  return [...out];
}

function lineOf(doc: Document, lc: LineCounter, path: PropertyKey[]): number | undefined {
  // Walk down as far as the path exists; report the deepest node found.
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)) {
      return lc.linePos(node.range[0] as number).line;
    }
    if (n === 0) break;
  }
  return undefined;
}

export function parsePolicies(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Policies {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new PolicyError(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
    );
  }
  const missing = new Map<Node, string[]>();
  interpolate(doc, env, missing);
  const raw: unknown = doc.toJS() ?? {};
  const result = policiesSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.length ? issue.path.join('.') : '(root)';
      const line = lineOf(doc, lc, issue.path);
      const unset = unsetVarsAt(doc, issue.path, missing);
      const hint = unset.length ? ` (unset environment variable ${unset.join(', ')})` : '';
      return `${path}${line ? ` (line ${line})` : ''}: ${issue.message}${hint}`;
    });
    throw new PolicyError(file, problems);
  }
  return result.data;
}

export async function loadPolicies(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Policies> {
  return parsePolicies(await readFile(file, 'utf8'), file, env);
}
