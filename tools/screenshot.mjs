// Takes the README's picture of the page: serves the built site, opens it in headless Chromium on
// the CPU backend, decodes the first sample photo in 3 steps and saves the whole page as a PNG.
//   node tools/screenshot.mjs [SITE] [OUT]        # defaults: target/site, docs/page.png
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const site = process.argv[2] || join(root, "target/site");
const out = process.argv[3] || join(root, "docs/page.png");
const server = spawn(join(process.env.CARGO_TARGET_DIR || join(root, "target"), "debug/epsvae"), ["serve", site, "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
const origin = await new Promise((resolve, reject) => {
  let s = "";
  server.stderr.on("data", (d) => {
    s += d;
    const m = s.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
    if (m) resolve(`http://127.0.0.1:${m[1]}`);
  });
  server.on("exit", (c) => reject(new Error(`server exited ${c}: ${s}`)));
});
const flags = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
const b = await chromium.launch({ executablePath: "/usr/bin/chromium", args: flags });
try {
  const page = await (await b.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${origin}/?backend=cpu`);
  await page.waitForFunction(() => window.epsvae && window.epsvae.ready, null, { timeout: 600000 });
  await page.click("#samples img");
  await page.waitForFunction(() => document.body.dataset.done, null, { timeout: 600000 });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`screenshot: ${out}`);
} finally {
  await b.close();
  server.kill();
}
