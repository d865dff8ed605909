/**
 * The caption page in a real browser: Debian's Chromium, headless, its microphone a WAV that
 * flite speaks, the page opened with ?autostart=1 against the Node proxy and the fake OpenAI.
 * What is asserted is what a user and the provider see: the fake received the file's audio
 * (its loudness contour, so a broken encoder, a wrong rate or silence fails), and the page
 * shows the fake's finals per participant, with the provider; a second tab with the same
 * sessionId is a second participant on both pages.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Wav } from '../../scripts/lib/wav.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAUNCHERS, type RunningApp } from '../conformance/launchers.ts';
import { FakeOpenAI, SAMPLE_RATE } from '../fakes/openai-realtime.ts';
import { findChromium, hasFlite, launchWithMicrophone, speak } from '../helpers/browser.ts';
import { skipNote } from '../helpers/fixtures.ts';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { FakeGeminiLive } from '../fakes/gemini-live.ts';
import { startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';
import { startProxy, type Proxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

const chromium = findChromium();
const why = 'missing' in chromium ? chromium.missing : hasFlite() ? undefined : 'no flite to speak the microphone (apt-get install flite)';
if (why) skipNote(import.meta.url, 'the caption page in Chromium', why);

/** Level per `ms` block in dBFS, clamped to [-60, 0] so that silence's noise floor does not weigh. */
function contour(samples: Int16Array, rate: number, ms = 20): number[] {
  const block = (rate * ms) / 1000;
  const out: number[] = [];
  for (let at = 0; at + block <= samples.length; at += block) {
    let sum = 0;
    for (let i = at; i < at + block; i++) sum += samples[i]! * samples[i]!;
    out.push(Math.max(-60, 10 * Math.log10(sum / block / 32768 ** 2 + 1e-12)));
  }
  return out;
}

function pearson(a: number[], b: number[]): number {
  const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(a), mean(b)];
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - ma) * (b[i]! - mb);
    da += (a[i]! - ma) ** 2;
    db += (b[i]! - mb) ** 2;
  }
  return num / Math.sqrt(da * db);
}

/**
 * How well `received` follows the looped `period`, at its best alignment: the browser's
 * microphone starts anywhere in the loop.
 */
function loopCorrelation(received: number[], period: number[]): number {
  let best = -1;
  for (let lag = 0; lag < period.length; lag++) {
    best = Math.max(best, pearson(received, received.map((_, i) => period[(i + lag) % period.length]!)));
  }
  return best;
}

interface Shown {
  id: string;
  me: boolean;
  provider: string;
  finals: string[];
}

const shown = (page: Page): Promise<Shown[]> =>
  page.$$eval('#captions .participant', (boxes) =>
    boxes.map((box) => ({
      id: /([0-9a-f]+)\)?$/.exec(box.querySelector('h2 span')!.textContent!)![1]!,
      me: box.classList.contains('me'),
      provider: box.querySelector('.provider')!.textContent!,
      finals: [...box.querySelectorAll('.final')].map((p) => p.textContent!),
    })),
  );

describe.skipIf(why !== undefined)('the caption page in Chromium', () => {
  let dir: string;
  let proxy: Proxy;
  let browser: Browser;
  let mic: Wav;
  let micContour: number[];
  const sessionId = 'browser-1';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captions-'));
    mic = speak(join(dir, 'mic.wav'), ['The boy was there when the sun rose.', 'A rod is used to catch pink salmon.']);
    micContour = contour(mic.samples, mic.sampleRate);
    proxy = await startProxy();
    browser = await launchWithMicrophone((chromium as { path: string }).path, join(dir, 'mic.wav'));
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is served at / as one self-contained HTML document', async () => {
    const res = await fetch(proxy.url('/'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('aria-live="polite"');
    // Air-gapped sites: nothing is fetched from elsewhere.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it('streams the microphone as Opus and shows the fake provider\'s finals; a second tab is a second participant', async () => {
    const first = await browser.newPage();
    await first.goto(proxy.url(`/?sessionId=${sessionId}&autostart=1`));
    await until(async () => (await shown(first)).some((p) => p.me && p.finals.length >= 2), 'two finals on the page', 45_000);
    expect(await first.$eval('#encoding', (e) => e.textContent)).toBe('Opus (WebCodecs)');
    expect(await first.$eval('#runtime', (e) => e.textContent)).toBe('node');

    const [connection] = proxy.fake.connections;
    expect(proxy.fake.connections).toHaveLength(1);
    // The fake heard the file: its loudness follows the WAV's, wherever in the loop it began.
    // A whole loop of it, past the first half second (the encoder's and the AGC's start).
    const blocks = () => connection!.pcm().length / (SAMPLE_RATE / 50);
    await until(() => blocks() >= micContour.length + 25, 'a whole loop of the microphone at the fake', 45_000);
    const heard = contour(connection!.pcm(), SAMPLE_RATE).slice(25, 25 + micContour.length);
    // Measured: 0.95-0.96; the same sentences reversed give 0.86, two other sentences 0.74.
    expect(loopCorrelation(heard, micContour)).toBeGreaterThan(0.9);
    // Onsets (the 10 ms contour's steps), which reversal turns into offsets. Measured: 0.56;
    // reversed 0.20, other sentences 0.26.
    const steps = (x: number[]) => x.slice(1).map((v, i) => v - x[i]!);
    const micSteps = steps(contour(mic.samples, mic.sampleRate, 10));
    const heardSteps = steps(contour(connection!.pcm(), SAMPLE_RATE, 10).slice(50, 51 + micSteps.length));
    expect(loopCorrelation(heardSteps, micSteps)).toBeGreaterThan(0.4);

    const mine = (await shown(first)).find((p) => p.me)!;
    expect(mine.provider).toBe('openai');
    const completed = connection!.completed().filter((t) => t.trim() !== '');
    expect(mine.finals).toEqual(completed.slice(0, mine.finals.length));

    const second = await browser.newPage();
    await second.goto(proxy.url(`/?sessionId=${sessionId}&autostart=1`));
    await until(async () => (await shown(first)).some((p) => !p.me && p.finals.length >= 1), 'the second participant on the first page', 45_000);
    expect(proxy.fake.connections).toHaveLength(2);
    const onFirst = await shown(first);
    const onSecond = await shown(second);
    const other = onFirst.find((p) => !p.me)!;
    expect(other).toMatchObject({ provider: 'openai' });
    expect(onSecond.find((p) => p.me)!.id).toBe(other.id);
    expect(other.finals).toEqual(proxy.fake.connections[1]!.completed().filter((t) => t.trim() !== '').slice(0, other.finals.length));
    await first.close();
    await second.close();
  });
});

/**
 * The other providers take the page's audio too: Deepgram gets the browser's Opus packets
 * passed through unchanged (raw Opus at 48 kHz), Gemini decoded PCM. Each page shows finals
 * that the fake made, and names the provider.
 */
describe.skipIf(why !== undefined).each([
  {
    provider: 'deepgram',
    async start() {
      const fake = await FakeDeepgram.start();
      const server = await startProviderServer({ DEEPGRAM_API_KEY: fake.apiKey, DEEPGRAM_BASE_URL: fake.baseUrl });
      return {
        fake,
        server,
        heard: () => {
          const [c] = fake.connections;
          // Pass-through: the packets the browser's encoder made, on Ogg pages (PASS_THROUGH_BATCH_MS), no encoding parameters.
          return c !== undefined && !c.url.searchParams.has('encoding') && c.packets.length > 50;
        },
        // The proxy joins an utterance's is_final segments with spaces (docs/PROTOCOL.md §8).
        said: () =>
          fake.connections
            .flatMap((c) => c.sent)
            .filter((r) => r.type === 'Results' && r.is_final === true)
            .map((r) => (r as { channel: { alternatives: { transcript: string }[] } }).channel.alternatives[0]!.transcript)
            .join(' '),
      };
    },
  },
  {
    provider: 'gemini',
    async start() {
      const fake = await FakeGeminiLive.start();
      const server = await startProviderServer({ GEMINI_API_KEY: fake.apiKey, GEMINI_BASE_URL: fake.baseUrl });
      return {
        fake,
        server,
        // A second of the microphone, in however many messages PCM_BATCH_MS groups it into.
        heard: () => (fake.connections[0]?.samples ?? 0) >= 16_000,
        said: () => JSON.stringify(fake.connections.map((c) => c.sent)),
      };
    },
  },
])('the caption page with $provider', ({ provider, start }) => {
  let dir: string;
  let running: Awaited<ReturnType<typeof start>>;
  let browser: Browser;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captions-'));
    speak(join(dir, 'mic.wav'), ['The boy was there when the sun rose.', 'A rod is used to catch pink salmon.']);
    running = await start();
    browser = await launchWithMicrophone((chromium as { path: string }).path, join(dir, 'mic.wav'));
  });

  afterAll(async () => {
    await browser?.close();
    await (running?.server as ProviderServer | undefined)?.close();
    await running?.fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the finals the provider made, and its name', async () => {
    const page = await browser.newPage();
    await page.goto(running.server.url(`/?sessionId=with-${provider}&autostart=1`));
    await until(async () => (await shown(page)).some((p) => p.me && p.finals.length >= 1), 'a final on the page', 45_000);
    expect(running.heard()).toBe(true);
    const mine = (await shown(page)).find((p) => p.me)!;
    expect(mine.provider).toBe(provider);
    for (const text of mine.finals) expect(running.said()).toContain(provider === 'gemini' ? JSON.stringify(text).slice(1, -1) : text);
    await page.close();
  });
});

/** The same page served by the Worker transcribing in its isolate, under workerd. */
describe.skipIf(why !== undefined)('the caption page on the Worker', () => {
  let dir: string;
  let fake: FakeOpenAI;
  let app: RunningApp;
  let browser: Browser;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'captions-'));
    speak(join(dir, 'mic.wav'), ['The boy was there when the sun rose.', 'A rod is used to catch pink salmon.']);
    fake = await FakeOpenAI.start();
    const workerd = LAUNCHERS.find((l) => l.runtime === 'workerd')!;
    app = await workerd.start({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'info' });
    browser = await launchWithMicrophone((chromium as { path: string }).path, join(dir, 'mic.wav'));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the fake provider\'s finals, the runtime named', async () => {
    const page = await browser.newPage();
    await page.goto(`${app.origin}/?sessionId=on-workerd&autostart=1`);
    await until(async () => (await shown(page)).some((p) => p.me && p.finals.length >= 1), 'a final on the page', 45_000);
    expect(await page.$eval('#runtime', (e) => e.textContent)).toBe('workerd');
    const mine = (await shown(page)).find((p) => p.me)!;
    expect(mine.provider).toBe('openai');
    const completed = fake.connections.flatMap((c) => c.completed()).filter((t) => t.trim() !== '');
    expect(mine.finals).toEqual(completed.slice(0, mine.finals.length));
    await page.close();
  });
});
