// fanout.js -- a minimal Node.js `ws` fan-out server, the peer of
// mod_websocket's chat handler in wsload's broadcast mode.
//
//     node fanout.js PORT
//     node fanout.js PORT --tls CERT KEY     (wss://: https.createServer
//                                            + ws, the PEM files given)
//
// Every message from any client goes, unchanged and with its type, to every
// open client (the sender included, as a chat room would).  The path and the
// query string are ignored, so /chat?room=bench works as it does on httpd.
// wsload finds its timestamp token anywhere in the text, so the chat
// handler's JSON envelope and this server's bare text both measure.
'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer, WebSocket } = require('ws');

const port = parseInt(process.argv[2], 10);
const tls = process.argv[3] === '--tls';
if (!(port > 0 && port < 65536) || (process.argv.length > 3 &&
                                    !(tls && process.argv.length === 6))) {
    console.error('usage: node fanout.js PORT [--tls CERT KEY]');
    process.exit(2);
}

const common = {
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    clientTracking: true,
};
let wss;
let server = null;
if (tls) {
    // the same certificate and key as httpd's TLS virtual host
    server = https.createServer({
        cert: fs.readFileSync(process.argv[4]),
        key: fs.readFileSync(process.argv[5]),
    });
    wss = new WebSocketServer(Object.assign({ server: server }, common));
} else {
    wss = new WebSocketServer(Object.assign({
        host: '127.0.0.1',
        port: port,
        backlog: 4096,
    }, common));
}

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

if (server) {
    server.listen({ host: '127.0.0.1', port: port, backlog: 4096 }, () => {
        console.log('fanout.js listening on https://127.0.0.1:' + port);
    });
} else {
    wss.on('listening', () => {
        console.log('fanout.js listening on 127.0.0.1:' + port);
    });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
