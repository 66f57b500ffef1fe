import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Files run in parallel in forks; each test binds its own ports (port 0).
    pool: 'forks',
    maxWorkers: 2,
    // A leaked socket or timer keeps a worker alive: fail instead of hanging CI.
    teardownTimeout: 10_000,
  },
});
