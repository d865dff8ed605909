/*
 * The few entry points src/runtime/local-engine code needs from PocketSphinx, with plain
 * types only (pointers as i32), so the host needs no knowledge of sphinxbase's structures.
 * The model files are read from the module's in-memory filesystem, where the host writes the
 * bytes it read (the engine never touches the disk or the network).
 */
#include <stdlib.h>
#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#define EXPORT(name) __attribute__((used, export_name(#name))) name

/* A decoder on the model in `dir` (acoustic model in dir/en-us, language model and
 * dictionary beside it) at 16 kHz; NULL when a file is missing or malformed. */
ps_decoder_t *EXPORT(psx_create)(const char *hmm, const char *lm, const char *dict) {
  err_set_logfp(NULL); /* its INFO lines would go to stderr for every decoder */
  cmd_ln_t *config = cmd_ln_init(NULL, ps_args(), TRUE,
                                 "-hmm", hmm, "-lm", lm, "-dict", dict,
                                 "-samprate", "16000", "-mmap", "no", NULL);
  if (config == NULL) return NULL;
  ps_decoder_t *ps = ps_init(config);
  cmd_ln_free_r(config);
  return ps;
}

int EXPORT(psx_start)(ps_decoder_t *ps) { return ps_start_utt(ps); }

/* Feeds `n` samples; returns 1 while the voice activity detector hears speech, 0 in
 * silence, negative on error. */
int EXPORT(psx_process)(ps_decoder_t *ps, const int16 *samples, int n) {
  int frames = ps_process_raw(ps, samples, (size_t)n, FALSE, FALSE);
  if (frames < 0) return frames;
  return ps_get_in_speech(ps) ? 1 : 0;
}

/* The current best hypothesis (empty when none); valid until the next call. */
const char *EXPORT(psx_hyp)(ps_decoder_t *ps) {
  int32 score;
  const char *hyp = ps_get_hyp(ps, &score);
  return hyp ? hyp : "";
}

int EXPORT(psx_end)(ps_decoder_t *ps) { return ps_end_utt(ps); }

void EXPORT(psx_free)(ps_decoder_t *ps) { ps_free(ps); }

void *EXPORT(psx_malloc)(size_t size) { return malloc(size); }

void EXPORT(psx_free_bytes)(void *ptr) { free(ptr); }
