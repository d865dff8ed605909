#!/usr/bin/env bash
# Builds wasm/opus.wasm: libopus (float build, decoder only) plus wasm/opus_shim.c,
# compiled with Emscripten into a standalone module without JavaScript glue. Its only
# import is env.emscripten_notify_memory_growth (a no-op for the host); memory grows.
#
#   bash wasm/build.sh            build, then write wasm/opus.wasm and wasm/opus.wasm.sha256
#   bash wasm/build.sh --check    rebuild in a temporary directory; exit 1 unless the result
#                                 is byte-identical to the committed wasm/opus.wasm
#   bash wasm/build.sh --native OUT MAIN.c
#                                 build the same pinned libopus natively (cc -O2) and link
#                                 it with MAIN.c into the executable OUT: the tests' reference
#                                 decoder, so it needs no libopus-dev and matches our version
#
# Source: the upstream libopus release tarball as shipped (unpatched) in Debian trixie's
# source package `opus`, fetched with `apt-get source --download-only` under a private apt
# configuration (the system's sources, lists and cache are left untouched) and checked
# against the SHA-256 pinned below. Set OPUS_SOURCE_TARBALL=/path/to/opus-1.5.2.tar.gz to
# use a local copy instead (same bytes as upstream's release, same check). After the check,
# one line of celt/arch.h is adapted for wasm32 (see unpack_source).
#
# Needs: bash, tar, sha256sum, node, emcc. When emcc is missing it installs Debian's
# `emscripten` package with apt-get (root or sudo). The committed bytes come from Debian
# bookworm's emscripten 3.1.6 (clang 14, binaryen 108); another toolchain builds a working
# module that --check will report as different.
set -euo pipefail
shopt -s inherit_errexit # $(build ...) must stop at the first failing command too

readonly OPUS_VERSION=1.5.2
readonly OPUS_ORIG=opus_${OPUS_VERSION}.orig.tar.gz
readonly OPUS_ORIG_SHA256=65c1d2f78b9f2fb20082c38cbe47c951ad5839345876e46941612ee87f9a7ce1
readonly DEBIAN_SUITE=trixie
readonly DEBIAN_MIRROR=http://deb.debian.org/debian
readonly DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
readonly EXPECTED_EMCC=3.1.6

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly CACHE_DIR=$HERE/build # gitignored; holds the verified source tarball and the build tree

# Compiler and linker flags. Changing any of them changes the committed bytes.
# The WebAssembly features beyond the MVP are all in every V8-based runtime (Node >= 16.4,
# Deno, workerd) and current browsers; each measured faster in bench/codec.ts:
#   -msimd128             auto-vectorisation
#   -mnontrapping-fptoint one instruction per float-to-int conversion instead of a
#                         range-checked sequence (~10 % for int16 output)
#   -mbulk-memory         memcpy/memmove/memset as memory.copy/fill, which V8 runs as
#                         native memmove (libopus shifts its history buffers every frame)
#   -msign-ext            one instruction for SILK's many (opus_int16) casts
# Output stays bit-identical to native libopus: no fast-math.
readonly OPUS_CFLAGS=(
  -O3 -flto -msimd128 -mnontrapping-fptoint -mbulk-memory -msign-ext
  -DHAVE_CONFIG_H "-DPACKAGE_VERSION=\"$OPUS_VERSION\""
  -Wall -Wno-unused-function -Wno-unused-variable -Wno-unused-but-set-variable
)
readonly OPUS_LDFLAGS=(
  --no-entry
  -sSTANDALONE_WASM
  -sFILESYSTEM=0
  -sALLOW_MEMORY_GROWTH=1
  -sINITIAL_MEMORY=1048576  # 1 MiB; each decoder adds ~18 KB of state
  -sMAXIMUM_MEMORY=2147483648  # keeps addresses positive (the shim returns errors as negatives)
  -sTOTAL_STACK=131072  # libopus keeps its scratch arrays on the stack (VAR_ARRAYS)
)

readonly SCRIPT=build.sh
# shellcheck source=wasm/common.sh
source "$HERE/common.sh"

# Prints the path of the verified source tarball, downloading it into $CACHE_DIR if needed.
fetch_source() {
  local cached=$CACHE_DIR/$OPUS_ORIG
  if [ -n "${OPUS_SOURCE_TARBALL:-}" ]; then
    verify "$OPUS_SOURCE_TARBALL" "$OPUS_ORIG_SHA256"
    echo "$OPUS_SOURCE_TARBALL"
    return
  fi
  if [ -f "$cached" ] && [ "$(sha256 "$cached")" = "$OPUS_ORIG_SHA256" ]; then
    echo "$cached"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  debian_source_download "$tmp" opus
  [ -f "$tmp/$OPUS_ORIG" ] ||
    die "Debian $DEBIAN_SUITE no longer ships $OPUS_ORIG (got: $(cd "$tmp" && echo *)); update OPUS_VERSION and OPUS_ORIG_SHA256"
  verify "$tmp/$OPUS_ORIG" "$OPUS_ORIG_SHA256"
  mkdir -p "$CACHE_DIR"
  cp "$tmp/$OPUS_ORIG" "$cached"
  echo "$cached"
}

# Unpacks the verified tarball into directory $1 and prints the source tree's path.
#
# The one change to upstream's source: celt/arch.h enables OPUS_FAST_INT64 (one 64-bit
# multiply per SILK fixed-point macro instead of two 32-bit ones plus shifts) only on LP64
# targets. wasm32 is ILP32, yet its i64 arithmetic is native on every host that runs it
# (x86-64, arm64), and the 32-bit fallback cost ~7 % of the whole decode. Both forms are
# exact, so the output stays bit-identical (test/codec compares every sample with native
# libopus). On the native x86-64 reference the condition was already true.
unpack_source() {
  local into=$1 tarball src
  tarball=$(fetch_source)
  tar -xzf "$tarball" -C "$into"
  src=$into/opus-$OPUS_VERSION
  [ -d "$src" ] || die "unexpected layout in $tarball"
  local condition='#if defined(__x86_64__) || defined(__LP64__) || defined(_WIN64)'
  grep -qxF "$condition" "$src/celt/arch.h" || die "celt/arch.h no longer has the OPUS_FAST_INT64 test this script adapts"
  sed -i "s/^$condition\$/& || defined(__wasm__)/" "$src/celt/arch.h"
  grep -qxF "$condition || defined(__wasm__)" "$src/celt/arch.h" || die "could not adapt celt/arch.h"
  echo "$src"
}

# Prints the sources listed in variable $2 of the automake fragment $1 (e.g. celt_sources.mk).
mk_sources() {
  awk -v var="$2" '
    !on && $1 == var && $2 == "=" { on = 1; $1 = ""; $2 = "" }
    on {
      more = sub(/\\[[:space:]]*$/, "")
      for (i = 1; i <= NF; i++) print $i
      if (!more) exit
    }' "$1"
}

# Builds into $1 (created fresh) and prints the path of the resulting module.
build() {
  local out=$1 src
  rm -rf "$out"
  mkdir -p "$out/obj"
  src=$(unpack_source "$out")

  # Float build. Encoder files are compiled too (the lists are upstream's), but nothing
  # references them once only the shim is exported, so the linker drops them.
  local sources=() name
  for name in CELT_SOURCES; do mapfile -t -O "${#sources[@]}" sources < <(mk_sources "$src/celt_sources.mk" "$name"); done
  for name in SILK_SOURCES SILK_SOURCES_FLOAT; do mapfile -t -O "${#sources[@]}" sources < <(mk_sources "$src/silk_sources.mk" "$name"); done
  for name in OPUS_SOURCES OPUS_SOURCES_FLOAT; do mapfile -t -O "${#sources[@]}" sources < <(mk_sources "$src/opus_sources.mk" "$name"); done
  [ "${#sources[@]}" -gt 100 ] || die "could not read the source lists from $src/*_sources.mk"

  local cflags=(
    "${OPUS_CFLAGS[@]}"
    -I"$HERE" -I"$src/include" -I"$src/celt" -I"$src/silk" -I"$src/silk/float" -I"$src/src"
    -ffile-prefix-map="$out"=.
  )
  local dir
  for dir in $(printf '%s\n' "${sources[@]}" | xargs -n 1 dirname | sort -u); do mkdir -p "$out/obj/$dir"; done
  log "compiling ${#sources[@]} libopus sources with $(nproc) jobs"
  (cd "$src" && printf '%s\n' "${sources[@]}" |
    xargs -P "$(nproc)" -I{} emcc "${cflags[@]}" -c {} -o "$out/obj/{}.o") >&2
  emcc "${cflags[@]}" -c "$HERE/opus_shim.c" -o "$out/obj/opus_shim.o" >&2

  local objects=("$out/obj/opus_shim.o")
  for name in "${sources[@]}"; do objects+=("$out/obj/$name.o"); done
  log "linking"
  emcc "${OPUS_CFLAGS[@]}" "${OPUS_LDFLAGS[@]}" "${objects[@]}" -o "$out/opus.wasm" >&2
  verify_module "$out/opus.wasm"
  echo "$out/opus.wasm"
}

# Fails unless the module imports exactly env.emscripten_notify_memory_growth and exports
# everything src/codec/opus.ts uses.
verify_module() {
  node --input-type=module - "$1" <<'EOF'
import { readFileSync } from 'node:fs';
const module = new WebAssembly.Module(readFileSync(process.argv[2]));
const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
if (imports.join() !== 'env.emscripten_notify_memory_growth') {
  console.error(`build.sh: error: unexpected imports: ${imports.join(', ') || '(none)'}`);
  process.exit(1);
}
const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
const wanted = ['memory', 'opus_shim_decoder_size', 'opus_shim_decoder_create',
  'opus_shim_decoder_destroy', 'opus_shim_decoder_reset', 'opus_shim_decode_float',
  'opus_shim_decode_int16', 'opus_shim_packet_samples', 'opus_shim_version',
  'opus_shim_malloc', 'opus_shim_free'];
const missing = wanted.filter((name) => !exports.has(name));
if (missing.length > 0) {
  console.error(`build.sh: error: missing exports: ${missing.join(', ')}`);
  process.exit(1);
}
EOF
}

# Builds the pinned libopus natively with cc, linked with the program $2, into $1.
build_native() {
  local exe=$1 program=$2 tmp src
  require cc tar awk xargs nproc
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  src=$(unpack_source "$tmp")
  local sources=() name
  mapfile -t -O 0 sources < <(mk_sources "$src/celt_sources.mk" CELT_SOURCES)
  for name in SILK_SOURCES SILK_SOURCES_FLOAT; do mapfile -t -O "${#sources[@]}" sources < <(mk_sources "$src/silk_sources.mk" "$name"); done
  for name in OPUS_SOURCES OPUS_SOURCES_FLOAT; do mapfile -t -O "${#sources[@]}" sources < <(mk_sources "$src/opus_sources.mk" "$name"); done
  local cflags=(
    -O2 -DHAVE_CONFIG_H "-DPACKAGE_VERSION=\"$OPUS_VERSION\"" -w
    -I"$HERE" -I"$src/include" -I"$src/celt" -I"$src/silk" -I"$src/silk/float" -I"$src/src"
  )
  log "compiling ${#sources[@]} libopus sources natively with $(nproc) jobs"
  (cd "$src" && printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -I{} cc "${cflags[@]}" -c {} -o {}.o) >&2
  local objects=()
  for name in "${sources[@]}"; do objects+=("$src/$name.o"); done
  cc -O2 -Wall -I"$src/include" -o "$exe" "$program" "${objects[@]}" -lm >&2
  log "wrote $exe"
}

main() {
  if [ "${1:-}" = --native ]; then
    [ $# -eq 3 ] || die "usage: build.sh --native OUT MAIN.c"
    export LC_ALL=C
    build_native "$2" "$3"
    return
  fi
  local mode=build
  case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: build.sh [--check])" ;;
  esac
  [ $# -le 1 ] || die "too many arguments (usage: build.sh [--check])"

  # Nothing from the caller's environment may leak into the compiler command lines.
  unset EMCC_CFLAGS EMMAKEN_CFLAGS
  export LC_ALL=C

  ensure_emscripten
  require tar sha256sum node awk xargs nproc
  log "toolchain: $(emcc --version | head -n 1)"

  if [ "$mode" = check ]; then
    [ -f "$HERE/opus.wasm" ] || die "wasm/opus.wasm does not exist; run bash wasm/build.sh first"
    local tmp built committed rebuilt
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    built=$(build "$tmp/build")
    committed=$(sha256 "$HERE/opus.wasm")
    rebuilt=$(sha256 "$built")
    if ! cmp -s "$built" "$HERE/opus.wasm"; then
      die "rebuilt module differs from wasm/opus.wasm: committed $committed ($(stat -c %s "$HERE/opus.wasm") bytes), rebuilt $rebuilt ($(stat -c %s "$built") bytes)"
    fi
    if [ "$(cut -d' ' -f1 "$HERE/opus.wasm.sha256")" != "$committed" ]; then
      die "wasm/opus.wasm.sha256 does not match wasm/opus.wasm ($committed)"
    fi
    log "ok: rebuilt module is identical to wasm/opus.wasm ($committed)"
  else
    local built
    built=$(build "$CACHE_DIR/tree")
    install -m 0644 "$built" "$HERE/opus.wasm"
    (cd "$HERE" && sha256sum opus.wasm >opus.wasm.sha256)
    log "wrote wasm/opus.wasm ($(stat -c %s "$HERE/opus.wasm") bytes, sha256 $(sha256 "$HERE/opus.wasm"))"
  fi
}

main "$@"
