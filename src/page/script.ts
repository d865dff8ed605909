/**
 * The caption page's browser script, as text (the page is served from memory on every runtime:
 * no file system, no bundler step for the Worker). Plain ES2020, no template literals, so that
 * it can sit in this String.raw literal unchanged.
 *
 * It is a media server in a tab: the microphone is encoded to Opus by WebCodecs' AudioEncoder
 * and each packet sent as one `media` event with its chunk and RTP timestamp, exactly as
 * Videobridge sends (docs/PROTOCOL.md §4.3), so the page exercises the production path. A
 * browser without an Opus AudioEncoder sends 16-bit PCM as `l16` instead.
 */
export const CAPTIONS_SCRIPT = String.raw`
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var hex = function (n) {
    var bytes = crypto.getRandomValues(new Uint8Array(n));
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join('');
  };
  var sessionId = params.get('sessionId') || ('demo-' + hex(3));
  if (!params.get('sessionId')) {
    params.set('sessionId', sessionId);
    history.replaceState(null, '', '?' + params.toString());
  }
  // The participant id is the tag's leading hex run (docs/PROTOCOL.md §4.6).
  var me = hex(4);
  var tag = me + '-' + String(Date.now() % 1000000000);
  var shown = new Map();
  var channel = 'BroadcastChannel' in window ? new BroadcastChannel('captions:' + sessionId) : null;
  var running = null;

  $('session').textContent = sessionId;
  $('share').href = location.href;

  function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }

  function participant(id) {
    var p = shown.get(id);
    if (p) return p;
    var box = document.createElement('article');
    box.className = 'participant' + (id === me ? ' me' : '');
    var head = document.createElement('h2');
    var name = document.createElement('span');
    name.textContent = id === me ? 'You (' + id + ')' : 'Participant ' + id;
    var provider = document.createElement('span');
    provider.className = 'provider';
    head.appendChild(name);
    head.appendChild(provider);
    var finals = document.createElement('div');
    finals.className = 'finals';
    var interim = document.createElement('p');
    interim.className = 'interim';
    // Interims change many times a second: screen readers get the settled finals only.
    interim.setAttribute('aria-hidden', 'true');
    box.appendChild(head);
    box.appendChild(finals);
    box.appendChild(interim);
    $('captions').appendChild(box);
    p = { finals: finals, interim: interim, provider: provider, interimId: null };
    shown.set(id, p);
    return p;
  }

  function showProvider(id, name) {
    participant(id).provider.textContent = name;
  }

  function showResult(msg) {
    var p = participant(msg.participant.id);
    var text = msg.transcript.map(function (t) { return t.text; }).join(' ');
    if (msg.is_interim) {
      p.interim.textContent = text;
      p.interimId = msg.message_id;
      return;
    }
    if (text.trim() !== '') {
      var line = document.createElement('p');
      line.className = 'final';
      line.textContent = text;
      p.finals.appendChild(line);
      while (p.finals.childElementCount > 50) p.finals.removeChild(p.finals.firstElementChild);
    }
    if (p.interimId === msg.message_id) {
      p.interim.textContent = '';
      p.interimId = null;
    }
  }

  // Other tabs of this browser with the same sessionId: their participants show here too.
  if (channel) channel.onmessage = function (e) {
    var m = e.data;
    if (m.kind === 'result') showResult(m.result);
    else if (m.kind === 'provider') showProvider(m.id, m.provider);
  };
  function share(m) { if (channel) channel.postMessage(m); }

  function base64(bytes) {
    var s = '';
    for (var i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function socketUrl() {
    var q = new URLSearchParams({ sessionId: sessionId, sendBack: 'true', sendBackInterim: 'true' });
    ['provider', 'lang'].forEach(function (k) { if (params.get(k)) q.set(k, params.get(k)); });
    var u = new URL('transcribe?' + q.toString(), location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }

  // The AudioWorklet hands the microphone's samples over in 128-frame blocks.
  var WORKLET = 'registerProcessor("capture", class extends AudioWorkletProcessor {' +
    'process(inputs) { var ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; } });';

  var OPUS = { codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 32000, opus: { frameDuration: 20000 } };

  async function opusSupported() {
    if (!('AudioEncoder' in window)) return false;
    try { return (await AudioEncoder.isConfigSupported(OPUS)).supported === true; } catch (e) { return false; }
  }

  async function start() {
    if (running) return;
    if (!window.isSecureContext || !navigator.mediaDevices) {
      status('The microphone needs a secure page: open it over https, or on localhost.', true);
      return;
    }
    $('toggle').disabled = true;
    status('Asking for the microphone…');
    var stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: true } });
    } catch (e) {
      $('toggle').disabled = false;
      status('No microphone: ' + e.message, true);
      return;
    }
    var opus = await opusSupported();
    var ctx = new AudioContext({ sampleRate: 48000 });
    var ws = new WebSocket(socketUrl());
    var r = { stream: stream, ctx: ctx, ws: ws, encoder: null, seq: 0 };
    running = r;
    ws.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      if (msg.event === 'info') {
        showProvider(me, msg.provider);
        share({ kind: 'provider', id: me, provider: msg.provider });
        $('runtime').textContent = msg.runtime;
        status('Listening. Speak.');
      } else if (msg.event === 'transcription-result') {
        showResult(msg);
        share({ kind: 'result', result: msg });
      } else if (msg.event === 'provider-switched') {
        showProvider(me, msg.to);
        share({ kind: 'provider', id: me, provider: msg.to });
      } else if (msg.event === 'error') {
        status(msg.message + ' (' + msg.code + ')', true);
      }
    };
    ws.onclose = function (e) {
      if (running === r) stop();
      if (e.code !== 1000) status('Disconnected (' + e.code + (e.reason ? ': ' + e.reason : '') + ').', e.code !== 1000);
    };
    await new Promise(function (resolve, reject) {
      ws.onopen = resolve;
      ws.onerror = function () { reject(new Error('the proxy refused the connection')); };
    }).catch(function (e) { status(e.message, true); });
    if (ws.readyState !== WebSocket.OPEN) { stop(); return; }

    ws.send(JSON.stringify({ event: 'start', start: { tag: tag, mediaFormat: opus
      ? { encoding: 'opus', sampleRate: 48000, channels: 1 }
      : { encoding: 'l16', sampleRate: 48000, channels: 1 } } }));
    var send = function (payload, timestamp) {
      if (ws.readyState !== WebSocket.OPEN) return;
      r.seq += 1;
      ws.send(JSON.stringify({ event: 'media', media: { tag: tag, chunk: r.seq, timestamp: timestamp % 4294967296, payload: payload } }));
    };
    if (opus) {
      r.encoder = new AudioEncoder({
        output: function (chunk) {
          var bytes = new Uint8Array(chunk.byteLength);
          chunk.copyTo(bytes);
          // RTP timestamps count 48 kHz samples; WebCodecs' are microseconds.
          send(base64(bytes), Math.round(chunk.timestamp * 0.048));
        },
        error: function (e) { status('Encoder failed: ' + e.message, true); stop(); },
      });
      r.encoder.configure(OPUS);
    }
    var url = URL.createObjectURL(new Blob([WORKLET], { type: 'text/javascript' }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    await ctx.resume();
    var node = new AudioWorkletNode(ctx, 'capture');
    var samples = 0;
    node.port.onmessage = function (e) {
      var block = e.data;
      if (r.encoder) {
        r.encoder.encode(new AudioData({ format: 'f32-planar', sampleRate: ctx.sampleRate, numberOfFrames: block.length,
          numberOfChannels: 1, timestamp: Math.round(samples * 1e6 / ctx.sampleRate), data: block }));
      } else {
        var pcm = new Int16Array(block.length);
        for (var i = 0; i < block.length; i++) pcm[i] = Math.max(-1, Math.min(1, block[i])) * 32767;
        send(base64(new Uint8Array(pcm.buffer)), samples);
      }
      samples += block.length;
    };
    ctx.createMediaStreamSource(stream).connect(node);
    node.connect(ctx.destination);
    r.node = node;
    $('toggle').textContent = 'Stop';
    $('toggle').disabled = false;
    $('encoding').textContent = opus ? 'Opus (WebCodecs)' : 'PCM (no Opus encoder in this browser)';
  }

  function stop() {
    var r = running;
    if (!r) return;
    running = null;
    r.stream.getTracks().forEach(function (t) { t.stop(); });
    if (r.node) r.node.port.onmessage = null;
    r.ctx.close();
    var finish = function () {
      if (r.ws.readyState === WebSocket.OPEN) {
        r.ws.send(JSON.stringify({ event: 'stop', stop: { tag: tag } }));
        // The last utterance's final follows the stop: keep listening a while.
        setTimeout(function () { r.ws.close(1000, 'stopped'); }, 6000);
      }
    };
    if (r.encoder && r.encoder.state === 'configured') r.encoder.flush().then(finish, finish);
    else finish();
    $('toggle').textContent = 'Start';
    $('toggle').disabled = false;
    status('Stopped.');
  }

  $('toggle').onclick = function () { if (running) stop(); else start(); };
  if (/^(1|true|yes|on)$/i.test(params.get('autostart') || '')) start();
})();
`;
