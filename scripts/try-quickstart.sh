#!/usr/bin/env bash
# Runs the README's quick start as a new user would: a fresh clone with nothing beside it,
# then each command of the first ```sh block under "## Quick start", in order. Run by CI.
#
# The quick start sets no key: `npm start` serves sessions with the built-in `local` provider
# (PocketSphinx, no network), so this is also the end-to-end check of the no-key path. Should
# the block write a key to .env, it becomes a fake OpenAI's (test/fakes/serve.ts, on
# 127.0.0.1), with OPENAI_BASE_URL pointing at it, since the real service is out of reach.
# `npm start` runs in the background until the end. The run fails unless `npm start` answers
# /health and `npm run stream` prints a final.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
port=8080  # the README's
work=$(mktemp -d)
pids=()
cleanup() {
  # Each background command leads its own process group (setsid): npm's children go with it.
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

health() { node -e 'fetch(process.argv[1]).then(async (r) => { console.log(await r.text()); process.exit(r.ok ? 0 : 1) }, () => process.exit(1))' "http://127.0.0.1:$port/health"; }
say() { printf '\n\033[1mquickstart>\033[0m %s\n' "$*"; }

commands=$(awk '/^## Quick start/ { section = 1; next } /^## / { section = 0 }
  section && /^```sh/ && !done { block = 1; next }
  block && /^```/ { block = 0; done = 1 }
  block { print }' "$repo/README.md")
[ -n "$commands" ] || { echo "no \`\`\`sh block under '## Quick start' in README.md" >&2; exit 1; }

setsid node --import tsx "$repo/test/fakes/serve.ts" openai >"$work/fake.json" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/fake.json" ] && break; sleep 0.1; done
fake_key=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).OPENAI_API_KEY' "$work/fake.json")
fake_url=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).OPENAI_BASE_URL' "$work/fake.json")

git clone -q "$repo" "$work/clone"
cd "$work/clone"
streamed=""
while IFS= read -r line; do
  command=$(printf '%s' "$line" | sed -E 's/[[:space:]]+#.*$//; s/^[[:space:]]+//')
  [ -z "$command" ] || [ "${command:0:1}" = "#" ] && continue
  say "$command"
  case "$command" in
    "npm start")
      setsid npm start >"$work/server.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 300); do health >/dev/null 2>&1 && break; sleep 0.2; done
      health || { cat "$work/server.log"; echo "npm start did not answer /health with 200 within 60 s" >&2; exit 1; }
      ;;
    *"> .env"*)
      bash -c "${command//sk-.../$fake_key}"
      echo "OPENAI_BASE_URL=$fake_url" >>.env
      ;;
    "npm run stream"*)
      bash -c "$command" 2>&1 | tee -a "$work/stream.out"
      streamed=yes
      ;;
    *)
      bash -c "$command"
      ;;
  esac
done <<<"$commands"

[ -n "$streamed" ] || { echo "the quick start never runs npm run stream" >&2; exit 1; }
grep -q '^FINAL' "$work/stream.out" || { echo "npm run stream printed no final transcript" >&2; cat "$work/server.log"; exit 1; }
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  git status --short; echo "the quick start left tracked files changed" >&2; exit 1
fi
say "passed: /health answered, a final was printed, git is clean"
