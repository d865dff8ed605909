/*
 * config.h for the WebAssembly build of libopus (see build.sh). Stands in for
 * the header autoconf would generate: float build, no assertions, no CPU
 * detection, no DNN extras (deep PLC, DRED, OSCE), C99 variable-length arrays
 * for scratch memory. PACKAGE_VERSION is passed by build.sh, which pins it.
 */
#ifndef OPUS_WASM_CONFIG_H
#define OPUS_WASM_CONFIG_H

#define OPUS_BUILD 1
#define VAR_ARRAYS 1
#define HAVE_LRINT 1
#define HAVE_LRINTF 1

#endif
