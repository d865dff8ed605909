import type { ProviderModule } from './provider.ts';
import { openai } from './openai.ts';
import { deepgram } from './deepgram.ts';
import { gemini } from './gemini.ts';
import { vosk } from './vosk.ts';

/** Every provider the proxy knows, by name. Adding one is a file in this folder and a line here. */
export const PROVIDERS: readonly ProviderModule[] = [openai, deepgram, gemini, vosk];
