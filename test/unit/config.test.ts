import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parsePolicies, PolicyError } from '../../src/config/load.js';

const base = `
backends:
  sim: { type: simulator }
models:
  demo: { deployments: [{ backend: sim }] }
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parsePolicies(text, 'p.yaml', env);
  } catch (e) {
    if (e instanceof PolicyError) return e.problems;
    throw e;
  }
  return [];
}

describe('policies.yaml', () => {
  it('the shipped default and examples are valid', () => {
    for (const f of ['policies/policies.yaml', 'policies/examples/openai-vllm-ollama.yaml']) {
      const p = parsePolicies(readFileSync(f, 'utf8'), f, { OPENAI_API_KEY: 'sk-x', APP_KEY: 'a', GATEWAY_ADMIN_TOKEN: 't' });
      expect(Object.keys(p.models).length).toBeGreaterThan(0);
    }
  });

  it('fills defaults', () => {
    const p = parsePolicies(base, 'p.yaml', {});
    expect(p.server.max_body_bytes).toBe(10 * 1024 * 1024);
    expect(p.state.store).toBe('memory');
    expect(p.circuit_breaker).toMatchObject({ window_s: 30, min_requests: 20, error_rate: 0.5, cooldown_s: 30 });
    expect(p.models.demo!.deployments[0]!.weight).toBe(1);
    // No connection cap per backend unless ops set one (a stream holds its connection).
    for (const b of Object.values(p.backends)) expect(b.pool_size).toBeUndefined();
  });

  it('interpolates ${VAR} and ${VAR:-default} inside values only', () => {
    const p = parsePolicies(
      `
admin_token: "\${TOKEN}"
backends:
  o: { base_url: "\${BASE:-http://127.0.0.1:9/v1}", api_key: "\${KEY}" }
models:
  m: { deployments: [{ backend: o }] }
`,
      'p.yaml',
      { TOKEN: 'adm', KEY: 'sk-1\nmodels: {}' },
    );
    expect(p.admin_token).toBe('adm');
    const b = p.backends.o!;
    expect('base_url' in b && b.base_url).toBe('http://127.0.0.1:9/v1');
    // A value with YAML syntax in it stays a string: it cannot inject structure.
    expect('api_key' in b && b.api_key).toBe('sk-1\nmodels: {}');
    expect(Object.keys(p.models)).toEqual(['m']);
  });

  it('names the bad field and its line', () => {
    const text = `backends:
  sim: { type: simulator }
models:
  demo:
    deployments: [{ backend: nope }]
    pricing: { input_per_mtok: -1 }
`;
    const p = problems(text);
    expect(p).toContainEqual(expect.stringMatching(/^models\.demo\.deployments\.0\.backend \(line 5\): unknown backend "nope"/));
    expect(p).toContainEqual(expect.stringMatching(/^models\.demo\.pricing\.input_per_mtok \(line 6\)/));
  });

  it('rejects unknown fields (typos) and unknown fallbacks', () => {
    expect(problems(base + 'circuit_breakr: {}\n')[0]).toMatch(/circuit_breakr|Unrecognized/);
    const p = problems(`
backends: { sim: { type: simulator } }
models:
  a: { deployments: [{ backend: sim }], fallbacks: [b, a] }
`);
    expect(p.join('\n')).toMatch(/models\.a\.fallbacks\.0.*unknown model "b"/);
    expect(p.join('\n')).toMatch(/models\.a\.fallbacks\.1.*itself/);
  });

  it('reports YAML syntax errors with a line', () => {
    expect(problems('models: [\n  oops')[0]).toMatch(/^line \d+/);
  });

  it('a key needs exactly one of key / key_sha256', () => {
    expect(problems(base + 'keys: [{ name: a }]\n').join()).toMatch(/keys\.0.*exactly one of key or key_sha256/);
  });

  it('blames an invalid field only on the unset variables it uses, not on every unset one in the file', () => {
    const p = problems(
      `
admin_token: "\${ADMIN_TOKEN}"
backends:
  o: { base_url: "\${BASE_URL}", api_key: "\${OPENAI_KEY}" }
models:
  m: { deployments: [{ backend: o }] }
keys:
  - { key: "\${APP_KEY}", name: "\${KEY_NAME}" }
`,
      {},
    );
    const base = p.find((l) => l.startsWith('backends.o.base_url'));
    expect(base).toMatch(/unset environment variable BASE_URL\)$/);
    const name = p.find((l) => l.startsWith('keys.0.name'));
    expect(name).toMatch(/unset environment variable KEY_NAME\)$/);
    // An object-level problem names the variables inside that object only.
    const key = p.find((l) => /^keys\.0[ :]/.test(l));
    if (key) expect(key).not.toMatch(/BASE_URL|ADMIN_TOKEN|OPENAI_KEY/);
  });
});
