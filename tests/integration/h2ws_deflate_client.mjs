// permessage-deflate over HTTP/2 (RFC 8441) for test_1300_deflate.py, with
// Node's own http2 and zlib modules (no packages):
//
//   node h2ws_deflate_client.mjs https://127.0.0.1:PORT /z
//
// Offers permessage-deflate on the extended CONNECT, checks the 200 names
// it, sends compressed messages (RSV1, the 00 00 ff ff tail taken off) and
// inflates the replies.  Prints "OK <what>" per check, "FAIL <what>" and
// exits 1 on the first failure.
import http2 from 'node:http2';
import crypto from 'node:crypto';
import zlib from 'node:zlib';

const [base, path] = process.argv.slice(2);
const url = new URL(base);
const fail = (what) => { console.log(`FAIL ${what}`); process.exit(1); };
const ok = (what) => console.log(`OK ${what}`);
setTimeout(() => fail('timeout'), 20000).unref();
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);

function frame(opcode, payload, rsv1) {
    const mask = crypto.randomBytes(4);
    const len = payload.length;
    const b0 = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
    let hdr;
    if (len < 126) {
        hdr = Buffer.from([b0, 0x80 | len]);
    } else if (len < 65536) {
        hdr = Buffer.alloc(4); hdr[0] = b0; hdr[1] = 0x80 | 126; hdr.writeUInt16BE(len, 2);
    } else {
        hdr = Buffer.alloc(10); hdr[0] = b0; hdr[1] = 0x80 | 127;
        hdr.writeBigUInt64BE(BigInt(len), 2);
    }
    const body = Buffer.from(payload);
    for (let i = 0; i < len; i++) body[i] ^= mask[i & 3];
    return Buffer.concat([hdr, mask, body]);
}

let buf = Buffer.alloc(0);
const waiters = [];
function pump() {
    while (waiters.length && buf.length >= 2) {
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const f = { rsv1: !!(buf[0] & 0x40), opcode: buf[0] & 0x0f,
                    payload: buf.subarray(off, off + len) };
        buf = buf.subarray(off + len);
        waiters.shift()(f);
    }
}
const next = () => new Promise((resolve) => { waiters.push(resolve); pump(); });

const session = http2.connect(base, { rejectUnauthorized: false });
session.on('error', (e) => fail(`session: ${e.message}`));
session.on('remoteSettings', async () => {
    const stream = session.request({
        ':method': 'CONNECT', ':protocol': 'websocket', ':path': path,
        ':scheme': url.protocol.replace(':', ''), ':authority': url.host,
        'sec-websocket-version': '13',
        'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
    });
    stream.on('error', (e) => fail(`stream: ${e.message}`));
    stream.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });
    const h = await new Promise((resolve) => stream.on('response', resolve));
    if (h[':status'] !== 200) fail(`status ${h[':status']}`);
    const ext = h['sec-websocket-extensions'] || '';
    if (!ext.startsWith('permessage-deflate')) fail(`extensions: ${ext}`);
    ok(`negotiated ${ext}`);
    for (const size of [100, 5000, 200000]) {
        const msg = Buffer.from('{"sym":"ACME","price":12.5} '.repeat(size / 25).slice(0, size));
        const z = zlib.deflateRawSync(msg, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
        stream.write(frame(1, z.subarray(0, z.length - 4), true));
        const f = await next();
        if (!f.rsv1 || f.opcode !== 1) fail(`reply ${size} not compressed: op ${f.opcode} rsv1 ${f.rsv1} ${f.payload.subarray(0, 40).toString("hex")}`);
        const back = zlib.inflateRawSync(Buffer.concat([f.payload, TAIL]),
                                         { finishFlush: zlib.constants.Z_SYNC_FLUSH });
        if (!back.equals(msg)) fail(`echo ${size}`);
        ok(`echo ${size} (${f.payload.length} bytes on the wire)`);
    }
    session.close();
    process.exit(0);
});
