#!/usr/bin/env node
// CLI: `llm-gateway [--policies FILE] [--port N] [--host H]` runs the gateway;
// `llm-gateway check FILE` validates a policies file for ops' own CI.
// First, before any other module is evaluated: the V8 flags the gateway sets for itself.
import './util/gc.js';
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { loadPolicies, parsePolicies, PolicyError } from './config/load.js';
import { contentHash } from './config/watch.js';
import { Gateway } from './gateway.js';
import type { GatewayLogger } from './telemetry/logger.js';
import { StateFileError, resetStateFile } from './admission/statefile.js';

const USAGE = `usage:
  llm-gateway [--policies FILE] [--port N] [--host HOST]   run the gateway
      --reset-state   move the state file (state.file) aside and start with no recorded spend
  llm-gateway check FILE                                     validate a policies file
environment: GATEWAY_POLICIES, GATEWAY_PORT, GATEWAY_HOST (default 127.0.0.1), GATEWAY_ADMIN_TOKEN, GATEWAY_LOG_LEVEL
signals: SIGHUP reloads the policies file (so do file changes and POST /admin/reload); SIGTERM/SIGINT drain and stop`;

async function check(file: string | undefined): Promise<number> {
  if (!file) {
    console.error(USAGE);
    return 2;
  }
  try {
    const p = await loadPolicies(file);
    console.log(`${file}: ok (${Object.keys(p.models).length} models, ${Object.keys(p.backends).length} backends, ${p.keys.length} keys)`);
    return 0;
  } catch (e) {
    console.error(e instanceof PolicyError ? e.message : `${file}: ${(e as Error).message}`);
    return 1;
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      policies: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'reset-state': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals[0] === 'check') return check(positionals[1] ?? values.policies);
  if (positionals.length) {
    console.error(`unknown command: ${positionals.join(' ')}\n${USAGE}`);
    return 2;
  }

  const file = values.policies ?? process.env.GATEWAY_POLICIES ?? 'policies/policies.yaml';
  let policies;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
    policies = parsePolicies(text, file);
  } catch (e) {
    console.error(e instanceof PolicyError ? e.message : `${file}: ${(e as Error).message}`);
    return 1;
  }
  const port = Number(values.port ?? process.env.GATEWAY_PORT ?? policies.server.port ?? 4000);
  const host = values.host ?? process.env.GATEWAY_HOST ?? policies.server.host ?? '127.0.0.1';
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid port: ${values.port ?? process.env.GATEWAY_PORT}`);
    return 2;
  }
  let movedAside: string | undefined;
  let gw: Gateway;
  try {
    if (values['reset-state']) {
      const stateFile = policies.state.store === 'memory' ? policies.state.file : undefined;
      if (stateFile) movedAside = resetStateFile(stateFile);
      else console.error('--reset-state: this policy keeps no state file (state.store: memory with state.file): nothing to reset');
    }
    gw = await Gateway.create(policies, { policiesFile: file, policiesHash: contentHash(text) });
  } catch (e) {
    if (!(e instanceof StateFileError)) throw e;
    console.error(`llm-gateway: ${e.message}`);
    return 1;
  }
  if (movedAside)
    gw.logger.warn(
      { file: policies.state.file, moved_to: movedAside },
      'state file moved aside (--reset-state): starting with no recorded spend',
    );
  const addr = await gw.listen(port, host);
  gw.logger.info({ host: addr.host, port: addr.port, policies: file, models: Object.keys(policies.models) }, 'listening');
  // Hot reload: file changes (ConfigMap swaps included), SIGHUP, POST /admin/reload.
  gw.watch();
  process.on('SIGHUP', () => {
    gw.reload(undefined, 'sighup').catch((e: unknown) => gw.logger.error({ err: e }, 'policy reload failed'));
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gw.logger.info({ signal, inflight: gw.inflight.size }, 'shutting down');
    gw.close()
      .then(() => {
        gw.logger.info('stopped');
        process.exitCode = 0;
        const exit = () => setTimeout(() => process.exit(0), 50).unref();
        const log = gw.logger as GatewayLogger;
        if (log.closeLog) log.closeLog(exit);
        else exit();
      })
      .catch((e: unknown) => {
        console.error(e);
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return -1;
}

run(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
