// Takes the README's picture of the page: serves the built site, opens it in headless Chromium on
// the CPU backend, decodes the first sample photo in 3 steps (and with 4 seeds) and saves the whole page as a PNG.
//   node tools/screenshot.mjs [SITE] [OUT] [WIDTH] # defaults: target/site, docs/page.png, 1280 (390: a phone)
import { join } from "node:path";
import { chromium } from "playwright-core";
import { root, FLAGS, serveSite } from "./serve_site.mjs";

const site = process.argv[2] || join(root, "target/site");
const out = process.argv[3] || join(root, "docs/page.png");
const width = parseInt(process.argv[4] || "1280", 10);
const { origin, server } = await serveSite(site);
const b = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
try {
  const page = await (await b.newContext({ viewport: { width, height: 900 } })).newPage();
  await page.goto(`${origin}/?backend=cpu`);
  await page.waitForFunction(() => window.epsvae && window.epsvae.ready, null, { timeout: 600000 });
  await page.click("#samples img");
  await page.waitForFunction(() => document.body.dataset.done, null, { timeout: 600000 });
  // "What the decoder invents": 4 seeds' mean and spread.
  await page.click("#spread-run");
  await page.waitForFunction(() => document.body.dataset.spread, null, { timeout: 600000 });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`screenshot: ${out}`);
} finally {
  await b.close();
  server.kill();
}
