/**
 * A fake provider as a process of its own, for scripts that drive the real server from the
 * outside (scripts/try-quickstart.sh): prints the variables that point the proxy at it as one
 * JSON line, then serves until it is stopped.
 *
 *   node --import tsx test/fakes/serve.ts openai
 */
import { FakeOpenAI } from './openai-realtime.ts';

const kind = process.argv[2] ?? 'openai';
if (kind !== 'openai') {
  console.error(`unknown fake "${kind}" (known: openai)`);
  process.exit(2);
}
const fake = await FakeOpenAI.start();
console.log(JSON.stringify({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl }));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void fake.close().then(() => process.exit(0)));
