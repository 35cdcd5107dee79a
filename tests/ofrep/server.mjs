// OpenFeature's Node server SDK with its OFREP provider (npm: @openfeature/server-sdk, @openfeature/ofrep-provider),
// evaluating s3kv flags; run by tests/it/ofrep.rs, which asserts on what this prints.
//
// Argument: a JSON object {base, key, write_key, api}. Prints one JSON object: each evaluation's details, and
// whether a change written through the API was picked up.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const config = JSON.parse(process.argv[2]);
await OpenFeature.setProviderAndWait(
  new OFREPProvider({ baseUrl: config.base, headers: [['x-api-key', config.key]] }),
);
const client = OpenFeature.getClient();
const context = { targetingKey: 'user-1', plan: 'pro' };

/** The parts of a resolution a user checks. */
const seen = (details) => ({
  value: details.value,
  reason: details.reason,
  errorCode: details.errorCode ?? null,
  variant: details.variant ?? null,
});

const out = {
  boolean: seen(await client.getBooleanDetails('maintenance', false, context)),
  string: seen(await client.getStringDetails('theme', 'none', context)),
  integer: seen(await client.getNumberDetails('limit', 0, context)),
  float: seen(await client.getNumberDetails('ratio', 0, context)),
  object: seen(await client.getObjectDetails('ui', {}, context)),
  nested: seen(await client.getBooleanDetails('checkout/new-ui', false, context)),
  codeDefault: seen(await client.getStringDetails('default-me', 'from code', context)),
  missing: seen(await client.getBooleanDetails('missing', false, context)),
  mismatch: seen(await client.getStringDetails('maintenance', 'fallback', context)),
  broken: seen(await client.getBooleanDetails('broken', false, context)),
};

// A change through the API is what the next evaluation answers, once synced: poll up to 10 s.
const put = await fetch(`${config.api}/items/flags/theme`, {
  method: 'PUT',
  headers: { 'x-api-key': config.write_key, 'content-type': 'application/json' },
  body: '"green"',
});
out.put = put.status;
const deadline = Date.now() + 10_000;
out.changed = null;
while (Date.now() < deadline) {
  const value = await client.getStringValue('theme', 'none', context);
  if (value !== 'blue') {
    out.changed = value;
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await OpenFeature.close();
console.log(JSON.stringify(out));
