import type { ProviderModule } from './provider.ts';
import { openai } from './openai.ts';
import { deepgram } from './deepgram.ts';
import { gemini } from './gemini.ts';
import { local } from './local.ts';
import { vosk } from './vosk.ts';

/** Every provider the proxy knows, by name. Adding one is a file in this folder and a line here. */
export const PROVIDERS: readonly ProviderModule[] = [openai, deepgram, gemini, vosk];

/**
 * The providers of a Node or Deno server: the remote ones, then `local` (recognised in the
 * process, so last by default: it serves sessions only when no remote provider is configured,
 * unless PROVIDERS_PRIORITY or `?provider=local` says otherwise). The Cloudflare Worker has
 * no room for it.
 */
export const SERVER_PROVIDERS: readonly ProviderModule[] = [...PROVIDERS, local];
