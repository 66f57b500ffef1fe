// Deterministic embeddings: the same input always yields the same unit vector, so a
// test can compare results across calls (or across a cache) without a model.
import { inputTokens } from './words.js';

/** FNV-1a, 32 bit: a cheap, stable seed from the input text. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function embed(input: string, dims: number): Float32Array {
  const v = new Float32Array(dims);
  let state = fnv1a(input) || 1;
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    // xorshift32: deterministic pseudo-random values in [-1, 1)
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const x = ((state >>> 0) / 0x100000000) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  const n = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) v[i] = v[i]! / n;
  return v;
}

/** Normalize OpenAI's `input` (string | string[] | number[] | number[][]) to a list of items. */
function items(input: unknown): unknown[] {
  if (typeof input === 'string') return [input];
  if (Array.isArray(input) && input.length > 0 && typeof input[0] === 'number') return [input];
  return Array.isArray(input) ? input : [];
}

export interface EmbeddingRequest {
  input?: unknown;
  dimensions?: unknown;
  encoding_format?: unknown;
}

/** The response body, or an error message for a 400. */
export function embeddingsBody(req: EmbeddingRequest, model: string): { body: string } | { error: string; param: string } {
  const list = items(req.input);
  if (list.length === 0) return { error: "'input' must be a non-empty string or array", param: 'input' };
  const dims = req.dimensions === undefined ? 8 : req.dimensions;
  if (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1 || dims > 65536) {
    return { error: "'dimensions' must be a positive integer", param: 'dimensions' };
  }
  // The openai SDK asks for base64 by default and decodes it as little-endian float32.
  const base64 = req.encoding_format === 'base64';
  const data = list.map((item, index) => {
    const v = embed(typeof item === 'string' ? item : JSON.stringify(item), dims);
    const embedding = base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v);
    return { object: 'embedding', index, embedding };
  });
  const prompt = inputTokens(req.input);
  return {
    body: JSON.stringify({ object: 'list', data, model, usage: { prompt_tokens: prompt, total_tokens: prompt } }),
  };
}
