// Headless Chromium against the demo's live status page (status.html).
//
//   node live_status.mjs <base URL of the demo pages, e.g. http://127.0.0.1:8080/>
//
// The page connects to /status-live and shows the server's figures; while
// a second page (echo.html) sends messages, the message counts grow, the
// open WebSockets include both pages, and the chart gets drawn.  Prints
// "OK <step>" per step and "RESULT PASS" at the end; on a failure
// "FAIL <step>: <why>" and exit 1.  CHROMIUM overrides the browser.
import { chromium } from "playwright-core";

const base = process.argv[2];
if (!base) {
    console.error("usage: node live_status.mjs <base URL>");
    process.exit(2);
}
const url = (page) => new URL(page, base.endsWith("/") ? base : base + "/").href;
const TIMEOUT = 10000;
const POLL_MS = 100;
let step = "launch";

function ok(what) {
    console.log("OK " + what);
}

async function num(page, id) {
    return Number(await page.textContent("#" + id));
}

async function main() {
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    try {
        ok("chromium launched");
        const ctx = await browser.newContext();
        const live = await ctx.newPage();
        live.on("console", (m) => console.log(`[live console] ${m.text()}`));
        live.on("pageerror", (e) => console.log(`[live pageerror] ${e.message}`));
        step = "open status.html";
        await live.goto(url("status.html"));
        await live.waitForFunction(() => document.getElementById("status").textContent === "connected"
                                   && document.getElementById("open").textContent !== "-",
                                   null, { timeout: TIMEOUT, polling: POLL_MS });
        ok("live view connected");
        step = "the live view counts itself";
        if (await num(live, "open") < 1) {
            throw new Error("open is " + await live.textContent("#open"));
        }
        ok("the live view counts itself");
        const before = await num(live, "messagesIn");

        step = "echo page sends";
        const echo = await ctx.newPage();
        echo.on("pageerror", (e) => console.log(`[echo pageerror] ${e.message}`));
        await echo.goto(url("echo.html"));
        await echo.waitForFunction(() => /connected/.test(document.body.textContent),
                                   null, { timeout: TIMEOUT, polling: POLL_MS });
        for (let i = 0; i < 5; ++i) {
            await echo.evaluate((i) => {
                const input = document.querySelector("input[type=text], #message, #msg");
                input.value = "live " + i;
                const form = input.form;
                const button = document.querySelector("#send") || (form && form.querySelector("button"));
                button.click();
            }, i);
        }
        ok("echo page sends");

        step = "figures update";
        await live.waitForFunction(([b]) => Number(document.getElementById("messagesIn").textContent) >= b + 5
                                   && Number(document.getElementById("open").textContent) >= 2,
                                   [before], { timeout: TIMEOUT, polling: POLL_MS });
        ok("figures update (messages in, open)");

        step = "chart drawn";
        await live.waitForFunction(() => {
            const c = document.getElementById("chart");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) {
                if (d[i] !== 0) {
                    return true;
                }
            }
            return false;
        }, null, { timeout: TIMEOUT, polling: POLL_MS });
        ok("chart drawn");
        console.log("RESULT PASS");
    }
    finally {
        await browser.close();
    }
}

main().catch((e) => {
    console.log(`FAIL ${step}: ${e.message}`);
    process.exit(1);
});
