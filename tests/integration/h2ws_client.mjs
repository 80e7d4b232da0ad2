// WebSocket over HTTP/2 (RFC 8441) client for the integration tests, with
// Node's own http2 module (no packages):
//
//   node h2ws_client.mjs http://127.0.0.1:PORT /echo     (h2c)
//   node h2ws_client.mjs https://127.0.0.1:PORT /echo    (h2 over TLS)
//
// Prints "OK <what>" per check, "FAIL <what>" and exits 1 on the first
// failure, exits 0 when everything passed.
import http2 from 'node:http2';
import crypto from 'node:crypto';

const [base, path] = process.argv.slice(2);
const url = new URL(base);
const fail = (what) => { console.log(`FAIL ${what}`); process.exit(1); };
const ok = (what) => console.log(`OK ${what}`);
setTimeout(() => fail('timeout'), 20000).unref();

function frame(opcode, payload) {
    const mask = crypto.randomBytes(4);
    const len = payload.length;
    let hdr;
    if (len < 126) {
        hdr = Buffer.from([0x80 | opcode, 0x80 | len]);
    } else if (len < 65536) {
        hdr = Buffer.alloc(4);
        hdr[0] = 0x80 | opcode; hdr[1] = 0x80 | 126; hdr.writeUInt16BE(len, 2);
    } else {
        hdr = Buffer.alloc(10);
        hdr[0] = 0x80 | opcode; hdr[1] = 0x80 | 127; hdr.writeBigUInt64BE(BigInt(len), 2);
    }
    const body = Buffer.from(payload);
    for (let i = 0; i < len; i++) body[i] ^= mask[i & 3];
    return Buffer.concat([hdr, mask, body]);
}

// Reads whole frames from the stream, one promise per frame.
class Reader {
    constructor(stream) {
        this.buf = Buffer.alloc(0);
        this.waiters = [];
        stream.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.pump(); });
        stream.on('end', () => { this.ended = true; this.pump(); });
    }
    pump() {
        while (this.waiters.length) {
            const f = this.parse();
            if (!f) {
                if (this.ended) this.waiters.shift().resolve(null);
                else return;
            } else {
                this.waiters.shift().resolve(f);
            }
        }
    }
    parse() {
        const b = this.buf;
        if (b.length < 2) return null;
        if (b[1] & 0x80) fail('server frame is masked');
        let len = b[1] & 0x7f, off = 2;
        if (len === 126) { if (b.length < 4) return null; len = b.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (b.length < 10) return null; len = Number(b.readBigUInt64BE(2)); off = 10; }
        if (b.length < off + len) return null;
        const f = { fin: !!(b[0] & 0x80), opcode: b[0] & 0x0f, payload: b.subarray(off, off + len) };
        this.buf = b.subarray(off + len);
        return f;
    }
    next() { return new Promise((resolve) => { this.waiters.push({ resolve }); this.pump(); }); }
}

const session = http2.connect(base, { rejectUnauthorized: false });
session.on('error', (e) => fail(`session: ${e.message}`));
session.on('remoteSettings', async (settings) => {
    if (!settings.enableConnectProtocol) fail('server does not offer SETTINGS_ENABLE_CONNECT_PROTOCOL');
    ok('extended CONNECT offered');
    const stream = session.request({
        ':method': 'CONNECT', ':protocol': 'websocket', ':path': path,
        ':scheme': url.protocol.replace(':', ''), ':authority': url.host,
        'sec-websocket-version': '13',
    });
    stream.on('error', (e) => fail(`stream: ${e.message}`));
    const reader = new Reader(stream);
    const status = await new Promise((resolve) => stream.on('response', (h) => resolve(h[':status'])));
    if (status !== 200) fail(`status ${status}`);
    ok('200 to the extended CONNECT');

    for (const size of [0, 125, 126, 65535, 65536, 200000]) {
        for (const [opcode, name] of [[1, 'text'], [2, 'binary']]) {
            const payload = opcode === 1 ? Buffer.from('x'.repeat(size)) : crypto.randomBytes(size);
            stream.write(frame(opcode, payload));
            const f = await reader.next();
            if (!f || f.opcode !== opcode || !f.fin || !f.payload.equals(payload)) {
                fail(`echo ${name} ${size}`);
            }
            ok(`echo ${name} ${size}`);
        }
    }
    stream.write(frame(9, Buffer.from('are you there')));
    let f = await reader.next();
    if (!f || f.opcode !== 10 || f.payload.toString() !== 'are you there') fail('pong');
    ok('pong');
    // invalid UTF-8 in a text message: 1007
    stream.write(frame(1, Buffer.from([0x68, 0xc3, 0x28])));
    f = await reader.next();
    if (!f || f.opcode !== 8 || f.payload.readUInt16BE(0) !== 1007) fail('close 1007 on bad UTF-8');
    ok('close 1007 on bad UTF-8');
    session.close();
    process.exit(0);
});
