#!/usr/bin/env bash
# npm run configure: one-time check of the tools each part of the build and deployment needs.
# It changes nothing and never fails for a missing optional tool: it says what is missing,
# what that affects, and how to get it.
set -uo pipefail
cd "$(dirname "$0")/.."

ok() { printf '  ok       %s\n' "$1"; }
missing() { printf '  missing  %s\n           %s\n' "$1" "$2"; }

echo "Toolchain:"

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -ge 22 ]; then
  ok "node $(node --version)"
elif [ "$node_major" -ge 20 ]; then
  ok "node $(node --version) (the image runs Node 22; wrangler 4.86 is the last that runs on Node 20)"
else
  missing "node >= 20.19 (found $(node --version))" "install Node 22 LTS"
fi

[ -d node_modules ] && ok "node_modules" || missing "node_modules" "run: npm install"

# The WASM build: only needed to change wasm/opus_shim.c or the libopus build, since the
# built module is committed.
if [ -f wasm/opus.wasm ]; then
  ok "wasm/opus.wasm (committed; npm run build only rebuilds it when it is missing)"
else
  missing "wasm/opus.wasm" "run: npm run build:wasm (needs emcc, see below)"
fi
if command -v emcc >/dev/null 2>&1; then
  version=$(emcc --version | head -n 1)
  case "$version" in
    *" 3.1.6 "*) ok "emcc: $version" ;;
    *) ok "emcc: $version (the committed module comes from 3.1.6; another version builds a working module with different bytes)" ;;
  esac
else
  missing "emcc (only to rebuild wasm/opus.wasm)" \
    "npm run build:wasm installs Debian's emscripten 3.1.6 with apt-get (as root or with sudo), or: sudo apt-get install emscripten"
fi

# Deployment.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ok "docker engine (npm run docker:build, npm run cf:deploy builds and pushes the image)"
else
  missing "a running Docker engine" \
    "needed by npm run docker:build/docker:run and by npm run cf:deploy (wrangler builds the container image); npm run dev works without it"
fi
if [ -x node_modules/.bin/wrangler ]; then
  ok "wrangler $(node_modules/.bin/wrangler --version 2>/dev/null | tail -n 1)"
  if node_modules/.bin/wrangler whoami 2>/dev/null | grep -q "You are logged in"; then
    ok "wrangler is logged in"
  else
    missing "a Cloudflare login" "run: npx wrangler login (or set CLOUDFLARE_API_TOKEN) before npm run cf:deploy"
  fi
fi
exit 0
