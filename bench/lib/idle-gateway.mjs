// Preload (node --import) that starts an idle gateway inside another process: its modules,
// heap and timers, and no traffic. Run from the checkout,
//   node bench/pair.js --a bare --b bare --b-node-args=--import=./bench/lib/idle-gateway.mjs
// measures what the weight of the gateway's process alone costs the bare proxy's forwarding.
import { parsePolicies } from '../../dist/config/load.js';
import { Gateway } from '../../dist/gateway.js';

const policy = {
  backends: { sim: { base_url: 'http://127.0.0.1:9/v1', api_key: 'sk-idle-not-a-real-key' } },
  models: { idle: { deployments: [{ backend: 'sim', model: 'idle' }] } },
};
const gw = await Gateway.create(parsePolicies(JSON.stringify(policy), 'idle-gateway.yaml'), {});
await gw.listen(0, '127.0.0.1');
