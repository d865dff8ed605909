import { CAPTIONS_SCRIPT } from './script.ts';

/**
 * The live-caption page served at `/` (README "Live captions in a browser"): one HTML document
 * with its style and script inline, so it needs nothing beside the proxy (air-gapped sites, no
 * CDN) and is served from memory on Node, Deno and the Worker alike.
 */
export const CAPTIONS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live captions · opus-transcriber-proxy</title>
<style>
  :root { color-scheme: light dark; --bg: #fff; --fg: #111; --muted: #4a4a4a; --card: #f3f4f6; --accent: #0b57d0; --err: #a50e0e; }
  @media (prefers-color-scheme: dark) { :root { --bg: #111; --fg: #f2f2f2; --muted: #c4c4c4; --card: #1f2329; --accent: #8ab4f8; --err: #f28b82; } }
  body { margin: 0 auto; max-width: 60rem; padding: 1rem; font: 1.125rem/1.5 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; }
  h1 { font-size: 1.4rem; margin: 0; flex: 1 1 auto; }
  button { font: inherit; padding: .5rem 1.5rem; border-radius: .4rem; border: 2px solid var(--accent); background: var(--accent); color: var(--bg); cursor: pointer; }
  button:focus-visible, a:focus-visible { outline: 3px solid var(--fg); outline-offset: 2px; }
  button:disabled { opacity: .6; cursor: progress; }
  a { color: var(--accent); }
  dl { display: flex; flex-wrap: wrap; gap: 0 1.5rem; margin: .5rem 0; color: var(--muted); font-size: 1rem; }
  dt { font-weight: 600; } dt::after { content: ":"; } dd { margin: 0 0 0 .3rem; }
  dl div { display: flex; }
  #status { min-height: 1.5em; margin: .25rem 0 1rem; }
  #status.error { color: var(--err); font-weight: 600; }
  .participant { background: var(--card); border-radius: .5rem; padding: .5rem 1rem; margin-bottom: 1rem; }
  .participant h2 { display: flex; justify-content: space-between; font-size: 1rem; margin: 0 0 .25rem; color: var(--muted); }
  .participant.me h2 { color: var(--accent); }
  .provider { font-weight: 400; }
  .final { margin: .15rem 0; }
  .interim { margin: .15rem 0; color: var(--muted); font-style: italic; min-height: 1.5em; }
</style>
</head>
<body>
<header>
  <h1>Live captions</h1>
  <button id="toggle" type="button">Start</button>
</header>
<dl>
  <div><dt>Session</dt><dd><a id="share" href="">#<span id="session"></span></a></dd></div>
  <div><dt>Audio</dt><dd id="encoding">not started</dd></div>
  <div><dt>Runtime</dt><dd id="runtime">–</dd></div>
</dl>
<p id="status" role="status">Press Start and allow the microphone. Open this page's link in another tab to add a participant.</p>
<main id="captions" aria-live="polite" aria-relevant="additions text" aria-label="Captions"></main>
<script>${CAPTIONS_SCRIPT}</script>
</body>
</html>
`;
