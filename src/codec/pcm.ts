/**
 * The PCM sample rates the proxy works in: what libopus decodes to, what the L16 resampler
 * converts between, and what a client may declare for l16 input.
 */
export const PCM_RATES = [8000, 12000, 16000, 24000, 48000] as const;
export type PcmRate = (typeof PCM_RATES)[number];
