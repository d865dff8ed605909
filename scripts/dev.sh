#!/usr/bin/env bash
# npm run dev: the Cloudflare Worker (wrangler dev, wrangler-container.jsonc) in front of a
# local Node server standing in for the container, which wrangler dev cannot run without
# Docker. CONTAINER_URL_OVERRIDE makes the Container class reach that server instead.
#
# Secrets for both come from .dev.vars (KEY=value lines, as wrangler reads it), e.g.
#   OPENAI_API_KEY=sk-...
# Extra arguments go to wrangler dev (e.g. --port 8787).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${CONTAINER_PORT:-8790}
if [ -f .dev.vars ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.dev.vars
  set +a
else
  echo "no .dev.vars: put OPENAI_API_KEY=... (or another provider's key) there" >&2
fi

# What the Worker would forward to a container: its own port, and no dispatcher.
PORT=$port HOST=127.0.0.1 USE_DISPATCHER=false node --import tsx src/runtime/node.ts &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT INT TERM

npx wrangler dev -c wrangler-container.jsonc --var "CONTAINER_URL_OVERRIDE:http://127.0.0.1:$port" "$@"
