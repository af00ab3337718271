// Benchmark of the page (not a test: it prints figures). Serves target/site, opens it in headless
// Chromium on WebGPU (SwiftShader here) and on the CPU, decodes a 256×256 image in 3 steps, and
// prints the page's own timings, the wasm size (raw and gzipped) and the weight bytes.
//   node tools/bench_page.mjs [target/site] [QUERY]     # e.g. "backend=cpu&preset=small": one backend, one model
import { readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { root, FLAGS, serveSite } from "./serve_site.mjs";

const site = process.argv[2] || join(root, "target/site");
const manifest = JSON.parse(readFileSync(join(site, "weights/manifest.json")));
for (const [dir, what] of [["pkg", "WebGPU"], ["pkg-cpu", "CPU"]]) {
  const wasm = readFileSync(join(site, dir, "epsvae_bg.wasm"));
  console.log(`wasm ${dir}/ (${what}): ${(wasm.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(wasm, { level: 9 }).length / 1e6).toFixed(2)} MB gzipped`);
}
for (const e of manifest) console.log(`weights: ${e.file} ${(e.bytes / 1e6).toFixed(2)} MB (${e.storage}, ${e.parts.join("+")})`);

const { origin, server } = await serveSite(site);
const flags = [...FLAGS, "--enable-unsafe-webgpu"];
const query = new URLSearchParams(process.argv[3] || "");
for (const backend of query.has("backend") ? [query.get("backend")] : ["webgpu", "cpu"]) {
  query.set("backend", backend);
  const b = await chromium.launch({ executablePath: "/usr/bin/chromium", args: flags });
  // Each run starts with an empty cache: the time to first frame includes downloading the weights.
  const page = await (await b.newContext()).newPage();
  const t0 = Date.now();
  await page.goto(`${origin}/?${query}`);
  await page.waitForFunction(() => window.epsvae && window.epsvae.ready, null, { timeout: 600000 });
  const png = await page.evaluate(async () => {
    const bmp = await createImageBitmap(await (await fetch("samples/citrus.jpg")).blob());
    const c = new OffscreenCanvas(256, 256);
    c.getContext("2d").drawImage(bmp, 0, 0, 256, 256);
    return Array.from(new Uint8Array(await (await c.convertToBlob({ type: "image/png" })).arrayBuffer()));
  });
  const file = `/tmp/epsvae-bench-256.png`;
  (await import("node:fs")).writeFileSync(file, Buffer.from(png));
  await page.setInputFiles("#file", file);
  await page.waitForFunction(() => document.body.dataset.done, null, { timeout: 900000 });
  const t = await page.evaluate(() => window.epsvae.timings);
  const first = Object.entries(t).filter(([k]) => !k.startsWith("step") && k !== "VAE baseline decode" && k !== "ready (total)").reduce((a, [, v]) => a + v, 0) + t["step 1"];
  console.log(`\n${backend} (${await page.$eval("#backend-info", (e) => e.textContent)})`);
  for (const [k, v] of Object.entries(t)) console.log(`  ${k.padEnd(44)} ${v.toFixed(0).padStart(7)} ms`);
  console.log(`  time to first frame    ${first.toFixed(0).padStart(7)} ms (wasm download + compile, device init, weights, encode, step 1; 256×256)`);
  console.log(`  wall clock, page open to last frame: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await b.close();
}
server.kill();
