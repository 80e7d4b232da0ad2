// fanout.js -- a minimal Node.js `ws` fan-out server, the peer of
// mod_websocket's chat handler in wsload's broadcast mode.
//
//     node fanout.js PORT
//
// Every message from any client goes, unchanged and with its type, to every
// open client (the sender included, as a chat room would).  The path and the
// query string are ignored, so /chat?room=bench works as it does on httpd.
// wsload finds its timestamp token anywhere in the text, so the chat
// handler's JSON envelope and this server's bare text both measure.
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

const port = parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
    console.error('usage: node fanout.js PORT');
    process.exit(2);
}

const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: port,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    backlog: 4096,
    clientTracking: true,
});

wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
        for (const client of wss.clients) {
            if (client.readyState === WebSocket.OPEN) {
                client.send(data, { binary: isBinary });
            }
        }
    });
    ws.on('error', () => {});
});

wss.on('listening', () => {
    console.log('fanout.js listening on 127.0.0.1:' + port);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
