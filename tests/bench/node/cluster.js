// cluster.js -- the peer of mod_websocket's WebSocketBroker in
// tests/bench/cluster.sh: a Node.js `ws` server that fans out over Redis
// pub/sub with `ioredis`, as people build a chat across servers.
//
//     node cluster.js PORT REDIS_PORT
//
// Every message from any client is PUBLISHed to one Redis channel; every
// message of that channel (from any server) goes to every open client of
// this server, unchanged.  Two Redis connections per server (one
// subscribed), as mod_websocket's bridge has.
'use strict';

const { WebSocketServer, WebSocket } = require('ws');
const Redis = require('ioredis');

const port = parseInt(process.argv[2], 10);
const redisPort = parseInt(process.argv[3], 10);
if (!(port > 0 && port < 65536) || !(redisPort > 0 && redisPort < 65536)) {
    console.error('usage: node cluster.js PORT REDIS_PORT');
    process.exit(2);
}
const CHANNEL = 'bench-node:room';

const pub = new Redis({ host: '127.0.0.1', port: redisPort });
const sub = new Redis({ host: '127.0.0.1', port: redisPort });

const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: port,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    backlog: 4096,
    clientTracking: true,
});

sub.subscribe(CHANNEL);
sub.on('messageBuffer', (channel, data) => {
    for (const client of wss.clients) {
        if (client.readyState === WebSocket.OPEN) {
            client.send(data, { binary: false });
        }
    }
});

wss.on('connection', (ws) => {
    ws.on('message', (data) => {
        pub.publish(CHANNEL, data);
    });
    ws.on('error', () => {});
});

wss.on('listening', () => {
    console.log('cluster.js listening on 127.0.0.1:' + port);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
