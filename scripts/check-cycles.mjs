#!/usr/bin/env node
// Fails when the built code (dist/) has a static import cycle. Checked on the output, not the
// sources: type-only imports are erased there, so what is left is the graph Node evaluates,
// and a cycle in it means a module can run against a half-initialised neighbour.
// Dynamic import() is left out: it runs after every static import has been evaluated.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const STATIC_IMPORT = /^\s*(?:import|export)\s+(?:[^'";]*?\sfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => join(e.parentPath ?? e.path, e.name));
}

/** Every static import cycle among the .js files under `dir`, each as a list of paths relative to it. */
export function findCycles(dir) {
  const root = resolve(dir);
  const edges = new Map();
  for (const file of jsFiles(root)) {
    const deps = [];
    for (const m of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) deps.push(resolve(dirname(file), m[1]));
    edges.set(file, deps);
  }
  // Tarjan's strongly connected components: every component with more than one module (or a
  // module importing itself) is a cycle.
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const cycles = [];
  let next = 0;
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || edges.get(v).includes(v)) cycles.push(scc.map((f) => relative(root, f)).sort());
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? 'dist';
  const cycles = findCycles(dir);
  for (const c of cycles) console.error(`import cycle in ${dir}/: ${c.join(' <-> ')}`);
  if (cycles.length > 0) process.exit(1);
  console.log(`no import cycle in ${dir}/ (${jsFiles(resolve(dir)).length} modules)`);
}
