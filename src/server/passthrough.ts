// Other /v1/* routes (files, batches, moderations, ...) are passed through with http-proxy-3
// to one configured backend: server.passthrough_backend, or the first deployment of the
// first model. The client cannot name the upstream; its key is replaced by the provider's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { ProxyServer } from 'http-proxy-3';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';

export function createPassthrough(gw: Gateway) {
  // Required on the first pass-through request: most sidecars never serve one, and the
  // library is ~10 MB of resident memory.
  let proxy: ProxyServer | undefined;
  const getProxy = (): ProxyServer => {
    if (!proxy) {
      const { createProxyServer } = createRequire(import.meta.url)('http-proxy-3') as typeof import('http-proxy-3');
      proxy = createProxyServer({ xfwd: false, changeOrigin: true, proxyTimeout: 120_000 });
    }
    return proxy;
  };
  return (req: IncomingMessage, res: ServerResponse, id: string): void => {
    const s = gw.stages();
    try {
      s.auth.identify(req.headers);
    } catch (e) {
      req.resume();
      return sendError(res, e as GatewayError, id);
    }
    const name = s.policies.server.passthrough_backend ?? Object.values(s.policies.models)[0]?.deployments[0]?.backend;
    const backend = name ? s.backends.get(name) : undefined;
    if (!backend) {
      req.resume();
      return sendError(res, errors.unavailable('No backend is configured for pass-through routes.'), id);
    }
    // /v1/files → <base_url>/files: base_url already carries its version prefix.
    req.url = (req.url ?? '/').replace(/^\/v1/, '');
    delete req.headers.authorization;
    delete req.headers['api-key'];
    delete req.headers.cookie;
    const started = performance.now();
    res.setHeader('x-request-id', id);
    getProxy().web(
      req,
      res,
      { target: backend.origin + backend.basePath, headers: { ...backend.injectedHeaders } },
      (err: Error) => {
        gw.metrics.upstreamErrors.inc({ backend: backend.name, reason: 'passthrough' });
        sendError(res, errors.upstreamConnect(backend.name), id);
        gw.logger.warn({ request_id: id, backend: backend.name, err: err.message }, 'pass-through failed');
      },
    );
    res.once('finish', () => {
      const series = s.metrics.series('passthrough', backend.name);
      series.requests(res.statusCode).inc();
      series.duration(false).observe((performance.now() - started) / 1000);
    });
  };
}
