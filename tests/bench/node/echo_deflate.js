// echo_deflate.js -- Node.js `ws` echo with permessage-deflate, the peer of
// tests/bench/deflate_time.py.
//
//     node echo_deflate.js PORT MODE      (MODE: off | nct | ctx)
//
// off: no permessage-deflate (the baseline);
// nct: no context takeover in either direction (as WebSocketCompression
// on); ctx: ws's defaults (context takeover, window 15, memLevel 8).
// Every message is compressed (threshold 0), level zlib's default.
'use strict';

const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2], 10);
const mode = process.argv[3] || 'nct';
const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: port,
    maxPayload: 16 * 1024 * 1024,
    perMessageDeflate: mode === 'off' ? false : mode === 'ctx' ? { threshold: 0 } : {
        threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true,
    },
});
wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
});
wss.on('listening', () => console.log('listening ' + port));
process.on('SIGTERM', () => process.exit(0));
