// Headless Chromium against the mod_websocket demo pages.
//
//   node chat_and_increment.mjs <base URL of the demo pages, e.g. http://127.0.0.1:8080/>
//
// Two chat pages join one room: the second one's join shows in the first,
// a message from each shows in the other, a leave shows.  The increment
// page's counter advances and is reset.  Two auction pages bid: a bid
// shows in both, a low bid is refused to its bidder only.  The echo box of index.html echoes
// and plain.html loads as ordinary HTTP.  Prints "OK <step>" per step and
// "RESULT PASS" at the end; on a failure "FAIL <step>: <why>" and exit 1.
// CHROMIUM overrides the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.argv[2];
if (!base) {
    console.error("usage: node chat_and_increment.mjs <base URL>");
    process.exit(2);
}
const url = (page) => new URL(page, base.endsWith("/") ? base : base + "/").href;
const TIMEOUT = 10000;
let step = "launch";

function ok(what) {
    console.log("OK " + what);
}

// Poll on a timer, not on requestAnimationFrame (Playwright's default): a
// page that is not in front gets no animation frames, and a condition that
// needs more than one look (a counter that must advance) then never passes.
const POLL_MS = 100;

async function waitText(page, selector, needle, what) {
    step = what;
    await page.waitForFunction(
        ([sel, text]) => {
            const el = document.querySelector(sel);
            return el !== null && el.textContent.includes(text);
        },
        [selector, needle], { timeout: TIMEOUT, polling: POLL_MS });
    ok(what);
}

async function counter(page) {
    return Number(await page.textContent("#counter"));
}

async function openChat(ctx, room, name) {
    const page = await ctx.newPage();
    page.on("console", (m) => console.log(`[${name} console] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`[${name} pageerror] ${e.message}`));
    step = `open chat.html as ${name}`;
    await page.goto(url("chat.html"));
    await page.fill("#room", room);
    await page.fill("#name", name);
    await page.click("#connect");
    await waitText(page, "#status", "connected", `${name} connected`);
    await waitText(page, "#log", `${name} (`, `${name} sees its own join`);
    const me = await page.evaluate(() => {
        const w = [...document.querySelectorAll("#log .welcome")].pop();
        return w ? w.textContent.split(" ")[2] : null;
    });
    return { page, me };
}

async function main() {
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
        ok("chromium launched");

        // ---- chat: two pages in one room --------------------------------
        const room = "browser-" + Math.random().toString(36).slice(2, 10);
        const alice = await openChat(ctx, room, "alice");
        const bob = await openChat(ctx, room, "bob");
        await waitText(alice.page, "#log", `bob (${bob.me}) joined ${room}`,
                       "alice sees the join notice of bob");

        step = "alice sends";
        await alice.page.fill("#msg", "hello from alice <b>&amp;</b> \u00e9");
        await alice.page.click("#send");
        await waitText(bob.page, "#log",
                       `alice (${alice.me}): hello from alice <b>&amp;</b> \u00e9`,
                       "bob receives alice's message");
        await waitText(alice.page, "#log", "hello from alice", "alice receives her own message");

        step = "bob sends";
        await bob.page.fill("#msg", "hi alice");
        await bob.page.click("#send");
        await waitText(alice.page, "#log", `bob (${bob.me}): hi alice`,
                       "alice receives bob's message");

        step = "bob leaves";
        await bob.page.click("#leave");
        await waitText(alice.page, "#log", `bob (${bob.me}) left ${room}`,
                       "alice sees the leave notice of bob");

        // ---- increment -----------------------------------------------------
        const inc = await ctx.newPage();
        step = "open increment.html";
        await inc.goto(url("increment.html"));
        await inc.bringToFront();
        await waitText(inc, "#status", "connected", "increment connected");
        await waitText(inc, "#protocol", "dumb-increment-protocol",
                       "increment subprotocol chosen");
        step = "counter advances";
        const first = await counter(inc);
        await inc.waitForFunction((v) => Number(document.querySelector("#counter").textContent) >= v + 10,
                                  first, { timeout: TIMEOUT, polling: POLL_MS });
        const before = await counter(inc);
        ok(`counter advances (${first} -> ${before})`);
        step = "wait for counter >= 30";
        await inc.waitForFunction(() => Number(document.querySelector("#counter").textContent) >= 30,
                                  null, { timeout: TIMEOUT, polling: POLL_MS });
        step = "reset";
        await inc.click("#reset");
        await inc.waitForFunction(() => Number(document.querySelector("#counter").textContent) < 10,
                                  null, { timeout: TIMEOUT, polling: POLL_MS });
        const after = await counter(inc);
        ok(`counter reset (to ${after})`);
        step = "counter advances after reset";
        await inc.waitForFunction((v) => Number(document.querySelector("#counter").textContent) > v,
                                  after, { timeout: TIMEOUT, polling: POLL_MS });
        ok("counter advances after reset");

        // ---- auction: two bidders; a bid reaches both, a low one only its bidder
        const ann = await ctx.newPage();
        const ben = await ctx.newPage();
        for (const [p, name] of [[ann, "ann"], [ben, "ben"]]) {
            step = `open auction.html as ${name}`;
            await p.goto(url("auction.html"));
            await p.fill("#name", name);
            await p.click("#connect");
            await waitText(p, "#status", "connected", `auction: ${name} connected`);
        }
        step = "auction: current price";
        await ann.waitForFunction(() => Number(document.querySelector("#price").textContent) >= 100,
                                  null, { timeout: TIMEOUT, polling: POLL_MS });
        const price = Number(await ann.textContent("#price"));
        ok(`auction: current price ${price}`);
        await ann.fill("#bid", String(price + 5));
        await ann.click("#send");
        await waitText(ben, "#price", String(price + 5), "auction: ben sees ann's bid");
        await waitText(ben, "#leader", "ann", "auction: ben sees ann lead");
        await ben.fill("#bid", String(price + 6));
        await ben.click("#send");
        await waitText(ben, "#log", "refused", "auction: ben's low bid refused to ben");
        step = "auction: ann does not see ben's refusal";
        if ((await ann.textContent("#log")).includes("refused")) {
            throw new Error("ann saw ben's refusal");
        }
        ok(step);

        // ---- index.html echo box and plain HTTP ---------------------------
        const index = await ctx.newPage();
        step = "open index.html";
        await index.goto(url("index.html"));
        await waitText(index, "#echo-status", "connected", "index echo connected");
        await index.fill("#echo-msg", "echo me");
        await index.click("#echo-send");
        await waitText(index, "#echo-log", "< echo me", "index echo answered");
        step = "plain.html";
        const resp = await index.goto(url("plain.html"));
        if (resp.status() !== 200) {
            throw new Error("plain.html answered " + resp.status());
        }
        await waitText(index, "#plain", "ordinary file", "plain.html served over HTTP");

        console.log("RESULT PASS");
    } finally {
        if (ctx) {
            await ctx.close();
        }
        rmSync(userDataDir, { recursive: true, force: true });
    }
}

main().catch((e) => {
    console.log(`FAIL ${step}: ${e && e.message ? e.message.split("\n")[0] : e}`);
    process.exit(1);
});
