# Shared by wasm/build.sh (libopus) and wasm/pocketsphinx/build.sh: messages, checks, the
# Debian toolchain, and source tarballs fetched from Debian's archive under a private apt.
# Sourced, not run; the caller sets SCRIPT (its name in messages), DEBIAN_SUITE,
# DEBIAN_MIRROR, DEBIAN_KEYRING and EXPECTED_EMCC.

die() { echo "$SCRIPT: error: $*" >&2; exit 1; }
log() { echo "$SCRIPT: $*" >&2; }

sha256() { sha256sum "$1" | cut -d' ' -f1; }

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not installed"
  done
}

verify() { # file sha256
  local actual
  actual=$(sha256 "$1")
  [ "$actual" = "$2" ] || die "SHA-256 mismatch for $1: expected $2, got $actual"
}

# Installs Debian's emscripten when emcc is missing (CI starts from a bare Debian bookworm).
ensure_emscripten() {
  if ! command -v emcc >/dev/null 2>&1; then
    log "emcc not found; installing Debian's emscripten package with apt-get"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "emcc is missing and we are not root: run 'apt-get install emscripten' as root"
      sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q emscripten
  fi
  local version
  version=$(emcc --version | head -n 1)
  case "$version" in
    *" $EXPECTED_EMCC "*) ;;
    *) log "warning: expected emcc $EXPECTED_EMCC, found: $version (the output bytes will differ)" ;;
  esac
}

# Downloads Debian source packages' files into directory $1 (`apt-get source --download-only`
# of the packages named after it), with a private apt: its own sources.list (one deb-src
# line), lists, cache and status file. Command-line options override everything apt reads
# from /etc/apt, which is never written. Whether the wanted files came is the caller's check
# (a mirror may lack a .dsc or a Debian diff that the build does not need).
debian_source_download() {
  local dest=$1
  shift
  require apt-get
  [ -f "$DEBIAN_KEYRING" ] || die "$DEBIAN_KEYRING is missing (apt-get install debian-archive-keyring)"
  # No RETURN trap here: it would replace the caller's, which cleans up `dest`.
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/sources.list.d" "$tmp/preferences.d"
  touch "$tmp/status"
  echo "deb-src [signed-by=$DEBIAN_KEYRING] $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$tmp/sources.list"
  local apt=(
    apt-get -q
    -o "Dir::Etc::sourcelist=$tmp/sources.list"
    -o "Dir::Etc::sourceparts=$tmp/sources.list.d"
    -o "Dir::Etc::preferences=$tmp/preferences"
    -o "Dir::Etc::preferencesparts=$tmp/preferences.d"
    -o "Dir::State::lists=$tmp/lists"
    -o "Dir::State::status=$tmp/status"
    -o "Dir::Cache=$tmp/cache"
    -o "Debug::NoLocking=true"
    -o "APT::Sandbox::User=$(id -un)"
  )
  log "fetching Debian $DEBIAN_SUITE's source packages: $* (private apt config in $tmp)"
  "${apt[@]}" update >&2
  (cd "$dest" && { "${apt[@]}" source --download-only "$@" >&2 || true; })
  rm -rf "$tmp"
}
