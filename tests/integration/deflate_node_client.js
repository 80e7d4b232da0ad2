// deflate_node_client.js URL -- Node's ws with perMessageDeflate against
// mod_websocket (test_1300_deflate.py): text and binary messages whole and
// fragmented, up to 1 MiB, echoed back; prints one JSON line:
// {"extensions": <what ws negotiated>, "ok": <all echoes equal>, ...}.
// ws is found through NODE_PATH (tests/bench/node/node_modules).
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');

const url = process.argv[2];
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
const sent = [];
let got = 0, ok = true, frag = false;

function text(n, seed) {
  const words = ['{"price":', '12.5', ',"sym":"ACME"', '}', ' \u00e9t\u00e9 ', '\u20ac'];
  const out = [];
  let i = seed, len = 0;
  while (len < n) {
    const w = words[(i = (i * 7 + 3) % 6)];
    out.push(w);
    len += w.length;
  }
  return out.join('');
}

ws.on('open', () => {
  for (const n of [0, 1, 100, 5000, 70000, 1 << 20]) {
    const t = text(n, n % 5);
    sent.push(t);
    ws.send(t);
    const b = Buffer.concat([crypto.randomBytes(n >> 1), Buffer.alloc(n - (n >> 1))]);
    sent.push(b);
    ws.send(b);
  }
  // one message in three fragments, compressed as one stream
  const parts = [text(3000, 1), text(10, 2), text(40000, 3)];
  sent.push(parts.join(''));
  ws.send(parts[0], { fin: false });
  ws.send(parts[1], { fin: false });
  ws.send(parts[2], { fin: true });
  frag = true;
});

ws.on('message', (data, isBinary) => {
  const want = sent[got++];
  const same = isBinary ? Buffer.isBuffer(want) && want.equals(data)
                        : typeof want === 'string' && data.toString('utf8') === want;
  if (!same) ok = false;
  if (got === sent.length) {
    ws.close(1000);
  }
});

ws.on('close', (code) => {
  const pmd = ws._extensions && ws._extensions['permessage-deflate'];
  console.log(JSON.stringify({ extensions: ws.extensions, params: pmd ? pmd.params : null, ok: ok && frag && got === sent.length,
                               got, sent: sent.length, code }));
  process.exit(0);
});
ws.on('error', (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', got })); process.exit(1); }, 30000);
