import type { TranscribeParams } from '../../src/protocol/query.ts';

/** A session's validated query (what the app hands a session factory): sendBack on, OpenAI, Opus; `over` changes any of it. */
export const transcribeParams = (over: Partial<TranscribeParams> = {}): TranscribeParams => ({
  sessionId: 'conf',
  sendBack: true,
  sendBackInterim: false,
  useDispatcher: undefined,
  lang: undefined,
  provider: 'openai',
  encoding: 'opus',
  ...over,
});
