// Drives the official @segment/analytics-node SDK against a running `cairn serve`.
//
// Usage: node node_client.mjs HOST WRITE_KEY RUN_ID
// Sends every call type in several batches, flushes (closeAndFlush), and prints each message
// the SDK delivered as one JSON line for the Rust test to check. Exits 1 on any delivery error.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '.cache', 'node', 'package.json'));
const { Analytics } = require('@segment/analytics-node');

const [host, writeKey, run] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, path: '/v1/batch', flushAt: 4, maxRetries: 3 });

const delivered = [];
const failures = [];
const done = (err, ctx) => {
  if (err) failures.push(String(err));
  else delivered.push(ctx.event);
};
analytics.on('error', (e) => failures.push(String(e?.reason ?? e?.code ?? e)));

const userId = `node-user-${run}`;
const anonymousId = `node-anon-${run}`;
const timestamp = new Date(Date.UTC(2024, 2, 1, 12, 0, 0));

analytics.identify({ userId, anonymousId, traits: { email: `${userId}@example.com`, plan: 'pro' }, timestamp }, done);
for (let i = 0; i < 7; i++) {
  analytics.track({ userId, event: 'Order Completed', properties: { revenue: 10.5 + i, n: i }, timestamp }, done);
}
analytics.page({ userId, category: 'Docs', name: 'Install', properties: { path: '/docs/install' }, timestamp }, done);
analytics.screen({ userId, category: 'Settings', name: 'Profile', properties: { tab: 'profile' }, timestamp }, done);
analytics.group({ userId, groupId: `node-group-${run}`, traits: { name: 'Acme' }, timestamp }, done);
analytics.alias({ userId, previousId: anonymousId, timestamp }, done);
analytics.track({ anonymousId, event: 'Anonymous Visit', properties: { ref: 'ad' } }, done);

await analytics.closeAndFlush({ timeout: 20000 });
if (failures.length > 0 || delivered.length !== 13) {
  console.error(JSON.stringify({ failures, delivered: delivered.length }));
  process.exit(1);
}
for (const e of delivered) console.log(JSON.stringify(e));
