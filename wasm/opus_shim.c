/*
 * The whole C surface of wasm/opus.wasm: a mono libopus decoder for JavaScript
 * (src/codec/opus.ts). Everything the host needs is exported by name below;
 * nothing else from libopus is reachable, so the linker drops the encoder.
 *
 * Conventions: pointers are byte offsets into the module's memory; a negative
 * int is a libopus error code (OPUS_BAD_ARG, OPUS_INVALID_PACKET, ...).
 */
#include <stdint.h>
#include <stdlib.h>
#include <opus.h>

#define EXPORT(name) __attribute__((export_name(name), visibility("default")))

/* Decoders are always mono: libopus downmixes stereo packets itself. */
#define CHANNELS 1

/* Bytes of decoder state that opus_shim_decoder_create() allocates. */
EXPORT("opus_shim_decoder_size")
int32_t opus_shim_decoder_size(void) {
  return opus_decoder_get_size(CHANNELS);
}

/*
 * New mono decoder producing `sample_rate` Hz (8000, 12000, 16000, 24000 or
 * 48000). Returns its address, or a negative libopus error code: OPUS_BAD_ARG
 * for any other rate, OPUS_ALLOC_FAIL when memory cannot grow. Memory is capped
 * at 2 GiB (-sMAXIMUM_MEMORY), so a valid address is always positive.
 */
EXPORT("opus_shim_decoder_create")
intptr_t opus_shim_decoder_create(int32_t sample_rate) {
  int err = OPUS_OK;
  OpusDecoder *dec = opus_decoder_create(sample_rate, CHANNELS, &err);
  if (err != OPUS_OK) return err;
  if (dec == NULL) return OPUS_ALLOC_FAIL;
  return (intptr_t)dec;
}

EXPORT("opus_shim_decoder_destroy")
void opus_shim_decoder_destroy(OpusDecoder *dec) {
  opus_decoder_destroy(dec);
}

/* Back to the state of a fresh decoder (OPUS_RESET_STATE). */
EXPORT("opus_shim_decoder_reset")
int32_t opus_shim_decoder_reset(OpusDecoder *dec) {
  return opus_decoder_ctl(dec, OPUS_RESET_STATE);
}

/*
 * Decode into `pcm`, which holds `max_samples` samples. Returns the number of
 * samples written or a negative error code.
 *   data != NULL, fec == 0: decode the packet (at most max_samples).
 *   data == NULL:           packet loss concealment of exactly max_samples.
 *   data != NULL, fec == 1: in-band FEC: rebuild the lost frame preceding
 *                           `data` (max_samples long; libopus conceals when
 *                           the packet carries no FEC data).
 * For PLC and FEC, max_samples must be a multiple of 2.5 ms.
 */
EXPORT("opus_shim_decode_float")
int32_t opus_shim_decode_float(OpusDecoder *dec, const unsigned char *data,
                               int32_t len, float *pcm, int32_t max_samples,
                               int32_t fec) {
  return opus_decode_float(dec, data, len, pcm, max_samples, fec);
}

/* Same as opus_shim_decode_float, with 16-bit output (libopus soft-clips). */
EXPORT("opus_shim_decode_int16")
int32_t opus_shim_decode_int16(OpusDecoder *dec, const unsigned char *data,
                               int32_t len, opus_int16 *pcm,
                               int32_t max_samples, int32_t fec) {
  return opus_decode(dec, data, len, pcm, max_samples, fec);
}

/* Samples in a packet at `sample_rate`, or a negative error code. */
EXPORT("opus_shim_packet_samples")
int32_t opus_shim_packet_samples(const unsigned char *data, int32_t len,
                                 int32_t sample_rate) {
  return opus_packet_get_nb_samples(data, len, sample_rate);
}

/* NUL-terminated, e.g. "libopus 1.5.2". */
EXPORT("opus_shim_version")
const char *opus_shim_version(void) {
  return opus_get_version_string();
}

EXPORT("opus_shim_malloc")
void *opus_shim_malloc(size_t size) {
  return malloc(size);
}

EXPORT("opus_shim_free")
void opus_shim_free(void *ptr) {
  free(ptr);
}
