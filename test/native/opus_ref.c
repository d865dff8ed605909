/*
 * opus_ref: the native reference for the WASM decoder (src/codec/opus.ts). Links
 * the pinned libopus (built by wasm/build.sh --native) and replays a script of
 * decoder operations on one mono decoder. Built on demand by test/helpers/opus-ref.ts:
 *
 *   bash wasm/build.sh --native opus_ref test/native/opus_ref.c
 *
 * Usage: opus_ref [--rate HZ] [--int16] [--time N] [FILE]
 *        opus_ref --encode-fec [FILE]
 *
 * Input (FILE, or stdin): records of  u8 op, u32le arg, u32le length, length bytes.
 *   'D'  decode the packet into at most `arg` samples (0: 120 ms at --rate)
 *   'L'  packet lost: concealment of `arg` samples (the bytes are ignored)
 *   'F'  in-band FEC: the `arg` samples lost before the packet
 *   'R'  reset the decoder (OPUS_RESET_STATE)
 * Output, default mode: for every D, L and F record, an i32le libopus return value
 * (samples, or a negative error code), then that many samples, f32le (default)
 * or s16le (--int16), mono, at --rate (default 48000).
 * Output, --time N: replays the whole script N times (resetting the decoder before
 * each pass) and prints {"samples":S,"seconds":[...]}, where S is the samples decoded
 * per pass and each entry is the CPU time of one pass (CLOCK_PROCESS_CPUTIME_ID).
 * --encode-fec: reads s16le mono 48 kHz PCM and writes 20 ms VoIP packets at 24 kb/s
 * with in-band FEC for 20 % expected loss, each as u32le length then bytes (the
 * fixtures carry no FEC data, so the FEC tests make their own).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <opus.h>

#define MAX_MS 120

typedef struct {
  unsigned char op;
  uint32_t arg, len;
  unsigned char *data;
} record;

static void die(const char *msg) {
  fprintf(stderr, "opus_ref: %s\n", msg);
  exit(2);
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(int32_t v) {
  unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 24)};
  fwrite(b, 1, 4, stdout);
}

static unsigned char *read_all(FILE *f, size_t *size) {
  size_t cap = 1 << 16, n = 0, got;
  unsigned char *buf = malloc(cap);
  if (!buf) die("out of memory");
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap && !(buf = realloc(buf, cap *= 2))) die("out of memory");
  }
  if (ferror(f)) die(strerror(errno));
  *size = n;
  return buf;
}

static record *parse(unsigned char *buf, size_t size, size_t *count) {
  size_t cap = 1024, n = 0, pos = 0;
  record *recs = malloc(cap * sizeof *recs);
  if (!recs) die("out of memory");
  while (pos < size) {
    if (size - pos < 9) die("truncated record header");
    record r = {buf[pos], le32(buf + pos + 1), le32(buf + pos + 5), buf + pos + 9};
    pos += 9;
    if (r.len > size - pos) die("truncated record data");
    pos += r.len;
    if (!strchr("DLFR", r.op) || r.op == 0) die("unknown op");
    if (n == cap && !(recs = realloc(recs, (cap *= 2) * sizeof *recs))) die("out of memory");
    recs[n++] = r;
  }
  *count = n;
  return recs;
}

/* Runs the script once. Returns the samples decoded; writes them when `out` is set. */
static long run(OpusDecoder *dec, const record *recs, size_t n, int rate, int int16,
                void *pcm, FILE *out) {
  long total = 0;
  int max = rate / 1000 * MAX_MS;
  for (size_t i = 0; i < n; i++) {
    const record *r = &recs[i];
    int ret;
    if (r->op == 'R') {
      opus_decoder_ctl(dec, OPUS_RESET_STATE);
      continue;
    }
    int frame = r->op == 'D' && r->arg == 0 ? max : (int)r->arg;
    if (frame > max) die("frame size over 120 ms");
    const unsigned char *data = r->op == 'L' ? NULL : r->data;
    opus_int32 len = r->op == 'L' ? 0 : (opus_int32)r->len;
    int fec = r->op == 'F';
    if (int16)
      ret = opus_decode(dec, data, len, pcm, frame, fec);
    else
      ret = opus_decode_float(dec, data, len, pcm, frame, fec);
    if (ret > 0) total += ret;
    if (out) {
      put32(ret);
      if (ret > 0) fwrite(pcm, int16 ? 2 : 4, (size_t)ret, out);
    }
  }
  return total;
}

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int encode_fec(FILE *in) {
  size_t size;
  unsigned char *buf = read_all(in, &size);
  int err;
  OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  if (err != OPUS_OK) die(opus_strerror(err));
  opus_encoder_ctl(enc, OPUS_SET_BITRATE(24000));
  opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(1));
  opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(20));
  enum { FRAME = 960 };
  opus_int16 pcm[FRAME];
  unsigned char packet[1500];
  size_t samples = size / 2;
  for (size_t at = 0; at + FRAME <= samples; at += FRAME) {
    for (int i = 0; i < FRAME; i++) {
      const unsigned char *p = buf + 2 * (at + (size_t)i);
      pcm[i] = (opus_int16)(p[0] | p[1] << 8);
    }
    opus_int32 len = opus_encode(enc, pcm, FRAME, packet, sizeof packet);
    if (len < 0) die(opus_strerror(len));
    put32(len);
    fwrite(packet, 1, (size_t)len, stdout);
  }
  opus_encoder_destroy(enc);
  free(buf);
  return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  int rate = 48000, int16 = 0, passes = 0, encode = 0, err;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--int16")) int16 = 1;
    else if (!strcmp(argv[i], "--time") && i + 1 < argc) passes = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--encode-fec")) encode = 1;
    else if (argv[i][0] == '-' && argv[i][1] != 0) die("usage: opus_ref [--rate HZ] [--int16] [--time N] [FILE]");
    else path = argv[i];
  }
  FILE *in = path && strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!in) die(strerror(errno));
  if (encode) return encode_fec(in);
  size_t size, n;
  unsigned char *buf = read_all(in, &size);
  record *recs = parse(buf, size, &n);

  OpusDecoder *dec = opus_decoder_create(rate, 1, &err);
  if (err != OPUS_OK) die(opus_strerror(err));
  float pcm[48 * MAX_MS];

  if (passes <= 0) {
    run(dec, recs, n, rate, int16, pcm, stdout);
  } else {
    long samples = 0;
    printf("{\"samples\":");
    for (int p = 0; p < passes; p++) {
      opus_decoder_ctl(dec, OPUS_RESET_STATE);
      double t0 = cpu_seconds();
      samples = run(dec, recs, n, rate, int16, pcm, NULL);
      double t1 = cpu_seconds();
      if (p == 0) printf("%ld,\"seconds\":[", samples);
      printf("%s%.9f", p ? "," : "", t1 - t0);
    }
    printf("]}\n");
  }
  opus_decoder_destroy(dec);
  free(recs);
  free(buf);
  return fflush(stdout) == 0 ? 0 : 1;
}
