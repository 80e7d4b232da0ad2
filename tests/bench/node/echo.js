// echo.js -- the Node.js `ws` peer for wsload's echo and hold modes.
//
//     node echo.js PORT
//
// Every text or binary message goes back to its sender as the same type, on
// any path, listening on 127.0.0.1 only.  No per-message deflate: wsload
// does not offer it and mod_websocket's echo does not do it either, so the
// two are compared like for like.  Pings are answered by ws itself.
'use strict';

const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
    console.error('usage: node echo.js PORT');
    process.exit(2);
}

const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: port,
    perMessageDeflate: false,
    maxPayload: 16 * 1024 * 1024,
    backlog: 4096,
});

wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
        ws.send(data, { binary: isBinary });
    });
    ws.on('error', () => {});
});

wss.on('listening', () => {
    console.log('echo.js listening on 127.0.0.1:' + port);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
