/**
 * docs/captions.png: the caption page in headless Chromium, two tabs of one session (two
 * participants), each microphone a flite WAV, against the fake OpenAI of the tests (whose
 * "words" are tree names chosen by loudness: test/fakes/openai-realtime.ts).
 *
 *   node --import tsx scripts/screenshot.ts [OUT.png]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findChromium, launchWithMicrophone, speak } from '../test/helpers/browser.ts';
import { startProxy } from '../test/helpers/proxy.ts';
import { until } from '../test/helpers/wait.ts';

const out = process.argv[2] ?? 'docs/captions.png';
const chromium = findChromium();
if ('missing' in chromium) {
  console.error(chromium.missing);
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'screenshot-'));
speak(join(dir, 'mic.wav'), ['The boy was there when the sun rose.', 'A rod is used to catch pink salmon.']);
const proxy = await startProxy();
const browser = await launchWithMicrophone(chromium.path, join(dir, 'mic.wav'));
try {
  const first = await browser.newPage();
  await first.setViewport({ width: 900, height: 560 });
  await first.goto(proxy.url('/?sessionId=standup&autostart=1'));
  await until(async () => (await first.$$('.participant.me .final')).length >= 2, 'finals', 45_000);
  const second = await browser.newPage();
  await second.goto(proxy.url('/?sessionId=standup&autostart=1'));
  await until(async () => (await first.$$('.participant:not(.me) .final')).length >= 2, 'the second participant', 45_000);
  await first.bringToFront();
  await first.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await proxy.close();
  rmSync(dir, { recursive: true, force: true });
}
