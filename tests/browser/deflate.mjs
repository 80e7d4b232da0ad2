// Headless Chromium against a compressing location (test_1300_deflate.py).
//
//   node deflate.mjs <page URL on the server> <ws URL>
//
// Opens the page, then from it a WebSocket to the ws URL; prints one JSON
// line: {"extensions": ws.extensions, "ok": <every echo equal>, ...}.
// Text and binary messages of 10 B to 300 KB go out and must come back
// the same (Chromium offers permessage-deflate on every WebSocket).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [pageUrl, wsUrl] = process.argv.slice(2);
const userDataDir = mkdtempSync(join(tmpdir(), "mws-chromium-"));
let ctx;
try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"],
    });
    const page = await ctx.newPage();
    await page.goto(pageUrl);
    const result = await page.evaluate(async (url) => {
        const ws = new WebSocket(url);
        ws.binaryType = "arraybuffer";
        await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
        const queue = [];
        let waiter = null;
        ws.onmessage = (e) => { queue.push(e.data); if (waiter) { waiter(); waiter = null; } };
        const next = async () => {
            while (!queue.length) { await new Promise((r) => { waiter = r; }); }
            return queue.shift();
        };
        let ok = true, n = 0;
        for (const size of [10, 100, 1000, 70000, 300000]) {
            const text = ('{"sym":"ACME","price":' + size + ',"t":"\u00e9t\u00e9"} ').repeat(
                Math.ceil(size / 40)).slice(0, size);
            ws.send(text);
            if (await next() !== text) ok = false;
            const bin = new Uint8Array(size);
            for (let i = 0; i < size; i++) bin[i] = (i * 31) & 0xff;
            ws.send(bin);
            const back = new Uint8Array(await next());
            if (back.length !== size || back.some((v, i) => v !== bin[i])) ok = false;
            n += 2;
        }
        const extensions = ws.extensions;
        ws.close(1000);
        return { extensions, ok, n };
    }, wsUrl);
    console.log(JSON.stringify(result));
} catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
    process.exitCode = 1;
} finally {
    if (ctx) await ctx.close();
    rmSync(userDataDir, { recursive: true, force: true });
}
