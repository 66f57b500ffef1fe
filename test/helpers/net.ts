// Loopback ports for tests.
import { createServer } from 'node:net';

/** A port that was just bound on 127.0.0.1 and released: nothing listens on it (connecting is refused). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
