// End-to-end tests of the page in Debian's headless Chromium, driven by Playwright (playwright-core):
// the real wasm build, real WebGPU (SwiftShader) and the CPU fallback, the real shipped weights.
// Run by tools/test.sh after the site is built: node --test tests/browser.test.mjs
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { root, cli, FLAGS, serveSite } from "../tools/serve_site.mjs";

const site = process.env.EPSVAE_SITE || join(root, "target/site");
const scratch = mkdtempSync(join(tmpdir(), "epsvae-browser-"));
const TIMEOUT = 600_000; // SwiftShader is slow and compiles shaders on first use

let server;
let origin;

before(async () => {
  ({ server, origin } = await serveSite(site));
});
after(() => server && server.kill());

// Every uncaught error of any page fails the test that opened it.
const pageErrors = [];
afterEach(() => {
  const seen = pageErrors.splice(0);
  assert.deepEqual(seen, [], `uncaught page errors: ${seen.join(" | ")}`);
});

// Every test but the offline one blocks the service worker (sw.js): it would answer requests from
// its cache and precache both modules, which the request-counting and routing tests do not expect.
// The offline test turns it on.
const NO_SW = { serviceWorkers: "block" };

async function browser(webgpu) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [...FLAGS, ...(webgpu ? ["--enable-unsafe-webgpu"] : [])],
  });
}

// A page with request logging; `requests` lists every URL the page asked for. `prepare(context)`
// runs before the page opens (e.g. to install routes).
async function open(b, query = "", hash = "", prepare = async () => {}) {
  const context = await b.newContext(NO_SW);
  await prepare(context);
  const page = await context.newPage();
  const requests = [];
  context.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
  await page.goto(`${origin}/${query}${hash}`);
  return { context, page, requests };
}

async function ready(page) {
  await page.waitForFunction(() => window.epsvae && (window.epsvae.ready || !document.getElementById("error").hidden), null, { timeout: TIMEOUT });
  const err = await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent));
  assert.equal(err, "", `the page showed an error while loading: ${err}`);
}

// Waits until the page finishes a new decode or shows a new error.
async function settled(page, before) {
  await page.waitForFunction(
    (b) => {
      const e = document.getElementById("error");
      return (document.body.dataset.done && document.body.dataset.done !== b.done) || (!e.hidden && e.textContent !== b.error);
    },
    before,
    { timeout: TIMEOUT },
  );
}
const snapshot = (page) => page.evaluate(() => ({ done: document.body.dataset.done || "", error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent }));

async function decodeFile(page, file) {
  const before = await snapshot(page);
  await page.setInputFiles("#file", file);
  await settled(page, before);
  const err = await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent));
  assert.equal(err, "", `the page showed an error: ${err}`);
  return page.evaluate(() => ({ rgba: Array.from(window.epsvae.final.x0_hat), w: window.epsvae.final.width, h: window.epsvae.final.height, frames: window.epsvae.frames.length }));
}

function cliReference(file, steps = 3, seed = 0, temperature = null, preset = "small-f8") {
  const out = join(scratch, `ref-${steps}-${seed}-${temperature}-${preset}.png`);
  const temp = temperature === null ? [] : ["--temperature", String(temperature)];
  const entry = JSON.parse(readFileSync(join(site, "weights/manifest.json"))).find((e) => e.preset === preset && e.parts.includes("decoder"));
  execFileSync(cli, ["reconstruct", file, out, "--steps", String(steps), "--seed", String(seed), ...temp, "--weights", join(site, "weights", entry.file)], { stdio: "pipe" });
  return out;
}

// Reads a PNG through the page's own browser decoder, so both sides compare 8-bit RGBA.
async function pngPixels(page, file) {
  const b64 = readFileSync(file).toString("base64");
  return page.evaluate(async (b64) => {
    const blob = await (await fetch(`data:image/png;base64,${b64}`)).blob();
    const bmp = await createImageBitmap(blob);
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = c.getContext("2d");
    ctx.drawImage(bmp, 0, 0);
    return { rgba: Array.from(ctx.getImageData(0, 0, bmp.width, bmp.height).data), w: bmp.width, h: bmp.height };
  }, b64);
}

function maxDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) if (i % 4 !== 3) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const input = join(root, "crate/tests/data/lpips/wide_a.png"); // lossless: both sides read the same pixels

for (const backend of ["webgpu", "cpu"]) {
  test(`${backend}: a photo decodes in 3 steps and matches the native CLI within 2/255`, { timeout: TIMEOUT }, async () => {
    const b = await browser(true);
    try {
      const { page, requests } = await open(b, `?backend=${backend}`);
      await ready(page);
      assert.equal(await page.evaluate(() => window.epsvae.backend), backend, await page.$eval("#backend-info", (e) => e.textContent));
      assert.ok((await page.evaluate(() => window.epsvae.progress)) >= 1, "progress reached 100%");
      const got = await decodeFile(page, input);
      assert.equal(got.frames, 3);
      const want = await pngPixels(page, cliReference(input));
      assert.deepEqual([got.w, got.h], [want.w, want.h]);
      const d = maxDiff(got.rgba, want.rgba);
      assert.ok(d <= 2, `max difference ${d}/255 from the CLI`);
      // Origins compared whole (a prefix test would let http://127.0.0.1:80801 pass for :8080);
      // a blob: URL carries the origin that made it, a data: URL has none and fetches nothing.
      const foreign = requests.filter((u) => {
        const url = new URL(u);
        return url.protocol !== "data:" && url.origin !== origin;
      });
      assert.deepEqual(foreign, [], "no request leaves the page's origin");
    } finally {
      await b.close();
    }
  });
}

// The manifest entry of the f8 ε-VAE file (the page's default model) in the site `dir`.
const f8Decoder = (dir) => JSON.parse(readFileSync(join(dir, "weights/manifest.json"), "utf8")).find((e) => e.preset === "small-f8" && e.parts.includes("decoder"));

// Streaming: a server of its own holds back the second half of the ε-VAE file (the encoder is its
// first part, about 15% of it) until the test lets it go, so the order is fixed: the person's image
// must be encoded, and its latent drawn, while the decoder's bytes are still held.
test("an image is encoded as soon as the encoder has arrived, while the decoder still streams", { timeout: TIMEOUT }, async () => {
  const eps = f8Decoder(site);
  let release;
  const released = new Promise((r) => (release = r));
  let held = false;
  // A proxy in front of the suite's `epsvae serve`: every answer passes whole, but the ε-VAE file's.
  const server = createServer(async (req, res) => {
    const up = await fetch(`${origin}${req.url}`);
    const body = Buffer.from(await up.arrayBuffer());
    res.writeHead(up.status, { "content-type": up.headers.get("content-type") || "application/octet-stream", "content-length": body.length, "cache-control": "no-store" });
    if (new URL(req.url, origin).pathname !== `/weights/${eps.file}`) return res.end(body);
    const half = body.length >> 1;
    res.write(body.subarray(0, half));
    held = true;
    await released;
    res.end(body.subarray(half));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const b = await browser(false);
  try {
    const context = await b.newContext(NO_SW);
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
    await page.goto(`http://127.0.0.1:${server.address().port}/?backend=cpu`);
    await page.waitForFunction(() => window.epsvae.encoderReady, null, { timeout: TIMEOUT });
    assert.ok(held, "the server holds the ε-VAE file's second half");
    assert.equal(await page.evaluate(() => window.epsvae.ready), false, "the decoder is not in yet");
    await page.setInputFiles("#file", input);
    // (the page records this timing after it has drawn the latent)
    await page.waitForFunction(() => Object.keys(window.epsvae.timings).some((k) => k.startsWith("encode done, before the decoder was in")), null, { timeout: TIMEOUT });
    const during = await page.evaluate(() => ({ ready: window.epsvae.ready, latent: document.getElementById("cap-latent").textContent, status: document.getElementById("status").textContent, timings: Object.keys(window.epsvae.timings) }));
    assert.equal(during.ready, false, "the encode finished before the decoder's bytes did");
    assert.match(during.latent, /latent z: 4 channels/);
    assert.match(during.status, /decoding as soon as the decoder has arrived/);
    assert.ok(during.timings.includes("encode"), `timings: ${during.timings}`);
    // The rest arrives: the decode of the image already encoded follows without another input.
    const before = await snapshot(page);
    release();
    await settled(page, before);
    assert.equal(await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent)), "");
    assert.equal(await page.evaluate(() => window.epsvae.frames.length), 3);
    assert.equal(await page.evaluate(() => window.epsvae.ready), true);
  } finally {
    release();
    await b.close();
    server.close();
  }
});

test("a second visit downloads no weights (Cache API); a new version evicts the old one", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    const { page, requests } = await open(b, "?backend=cpu");
    await ready(page);
    assert.ok(requests.some((u) => u.endsWith(".safetensors")), "the first visit downloads the weights");
    requests.length = 0;
    await page.reload();
    await ready(page);
    assert.deepEqual(requests.filter((u) => u.endsWith(".safetensors")), [], "the second visit reads them from the cache");
    assert.ok(await page.evaluate(() => window.epsvae.weightsFromCache));
    // A release that changes one file: its old version (same URL, another SHA-256) and a cache of an
    // earlier layout are evicted once the new version is stored.
    const before = await page.evaluate(async () => {
      const c = await caches.open("epsvae-weights-v1");
      const keys = (await c.keys()).map((r) => r.url);
      const stale = keys[0].replace(/sha256=[0-9a-f]+/, `sha256=${"0".repeat(64)}`);
      await c.delete(keys[0]);
      await c.put(new Request(stale), new Response("the previous release's bytes"));
      await (await caches.open("epsvae-weights-v0")).put(new Request("/old"), new Response("old layout"));
      return keys;
    });
    assert.equal(before.length, 2, `one cache entry per weight file after the first visit: ${before}`);
    await page.reload();
    await ready(page);
    const after = await page.evaluate(async () => ({
      keys: (await (await caches.open("epsvae-weights-v1")).keys()).map((r) => r.url).sort(),
      names: (await caches.keys()).filter((n) => n.startsWith("epsvae-weights-")),
    }));
    assert.deepEqual(after.keys, [...before].sort(), "the stale version is gone and the current one is back");
    assert.deepEqual(after.names, ["epsvae-weights-v1"], "the earlier layout's cache is gone");
  } finally {
    await b.close();
  }
});

// Offline after one visit: a copy of the site on its own server, which the test stops (the network
// gone: every request fails) and restarts on the same port with a new weight file (a new release).
test("after one visit the page works offline, and a new weight file is picked up on the next online visit", { timeout: TIMEOUT }, async () => {
  const dir = join(scratch, "offline-site");
  cpSync(site, dir, { recursive: true });
  let served = await serveSite(dir);
  const port = new URL(served.origin).port;
  const b = await browser(false);
  try {
    const context = await b.newContext({ serviceWorkers: "allow" });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
    await page.goto(`${served.origin}/?backend=cpu`);
    await ready(page);
    await page.waitForFunction(() => window.epsvae.offline, null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#offline", (e) => e.textContent), /works offline/);
    const firstDecode = await decodeFile(page, input);
    await page.click("#copy-link");
    await page.waitForFunction(() => window.epsvae.link, null, { timeout: TIMEOUT });
    const link = await page.evaluate(() => window.epsvae.link);

    // The network goes away: the server stops and the browser is told it is offline.
    served.server.kill();
    await new Promise((r) => served.server.once("exit", r));
    await context.setOffline(true);
    // Not a reload: "copy link" put the latent in this page's address, which would decode it.
    await page.goto(`${served.origin}/?backend=cpu`);
    await ready(page);
    assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), "the reloaded page is served by the service worker");
    assert.equal(await page.evaluate(() => window.epsvae.weightsFromCache), true);
    const offlineDecode = await decodeFile(page, input);
    assert.equal(offlineDecode.frames, firstDecode.frames);
    assert.deepEqual(offlineDecode.rgba, firstDecode.rgba, "offline, the same image and seed decode to the same pixels");
    // ... and a shared link opens offline too (the same latent, decoded from it).
    // (a new document: its `done` mark starts empty and is set when the link's decode ends)
    await page.goto(link);
    await ready(page);
    await page.waitForFunction(() => document.body.dataset.done || !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.equal(await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent)), "");
    assert.equal(await page.evaluate(() => window.epsvae.fromLink), true);

    // A new release: the ε-VAE file rewritten with another default temperature (new bytes, new
    // SHA-256) and the manifest regenerated; the server comes back on the same port.
    const eps = f8Decoder(dir);
    const file = join(dir, "weights", eps.file);
    execFileSync(cli, ["quantize", file, `${file}.new`, "--to", "int8", "--temperature", "0.55"]);
    renameSync(`${file}.new`, file);
    execFileSync(cli, ["manifest", join(dir, "weights")]);
    const fresh = JSON.parse(readFileSync(join(dir, "weights/manifest.json"), "utf8")).find((e) => e.file === eps.file);
    assert.notEqual(fresh.sha256, eps.sha256);
    served = await serveSite(dir, port);
    await context.setOffline(false);
    await page.goto(`${served.origin}/?backend=cpu`);
    await ready(page);
    assert.equal(await page.evaluate(() => window.epsvae.temperature), 0.55, "the page runs the new file (its default τ)");
    const keys = await page.evaluate(async () => (await (await caches.open("epsvae-weights-v1")).keys()).map((r) => new URL(r.url).search));
    assert.ok(keys.includes(`?sha256=${fresh.sha256}`), `the new file is cached: ${keys}`);
    assert.ok(!keys.includes(`?sha256=${eps.sha256}`), `the old file is evicted: ${keys}`);
  } finally {
    await b.close();
    served.server.kill();
  }
});

test("without --enable-unsafe-webgpu the page falls back to the CPU and says why", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    const { page, requests } = await open(b, "?backend=webgpu");
    await ready(page);
    assert.equal(await page.evaluate(() => window.epsvae.backend), "cpu");
    const info = await page.$eval("#backend-info", (e) => e.textContent);
    assert.match(info, /because WebGPU is unavailable: .+/);
    // ... and it fetched the CPU-only module, not the larger WebGPU one.
    assert.equal(await page.evaluate(() => window.epsvae.module), "pkg-cpu");
    const wasm = requests.map((u) => new URL(u).pathname).filter((p) => p.endsWith(".wasm"));
    assert.deepEqual(wasm, ["/pkg-cpu/epsvae_bg.wasm"]);
  } finally {
    await b.close();
  }
});

// The other fallback: an adapter is offered, but the device cannot be created. Headless Chromium
// has no switch for that, so the test serves the page's own worker.js with one line in front that
// makes GPUAdapter.requestDevice reject (a simulated GPU failure; everything else is real).
test("when WebGPU offers an adapter but no device, the page loads the CPU module and says why", { timeout: TIMEOUT }, async () => {
  const b = await browser(true);
  try {
    const refuseDevice = (context) => context.route("**/worker.js", async (route) => {
      const res = await route.fetch();
      const refuse = 'GPUAdapter.prototype.requestDevice = () => Promise.reject(new DOMException("simulated: no device for this adapter", "OperationError"));\n';
      const headers = { ...res.headers() };
      delete headers["content-length"]; // the body changes; its encoding is undone by fetch()
      delete headers["content-encoding"];
      await route.fulfill({ status: res.status(), headers, body: refuse + (await res.text()) });
    });
    const { page, requests } = await open(b, "?backend=webgpu", "", refuseDevice);
    await ready(page);
    assert.equal(await page.evaluate(() => window.epsvae.backend), "cpu");
    assert.equal(await page.evaluate(() => window.epsvae.module), "pkg-cpu");
    const info = await page.$eval("#backend-info", (e) => e.textContent);
    assert.match(info, /because WebGPU is unavailable: .*simulated: no device for this adapter/);
    const wasm = requests.map((u) => new URL(u).pathname).filter((p) => p.endsWith(".wasm"));
    assert.deepEqual(wasm, ["/pkg/epsvae_bg.wasm", "/pkg-cpu/epsvae_bg.wasm"]);
    const got = await decodeFile(page, input);
    assert.equal(got.frames, 3);
    assert.equal(await page.$eval("#backend", (e) => e.value), "cpu");
  } finally {
    await b.close();
  }
});

test("a shared link reproduces the image in a fresh browser and is short", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    // A 256×256 image, the size the link budget is stated for.
    const square = join(scratch, "square.png");
    const { page } = await open(b, "?backend=cpu");
    await ready(page);
    // Make the 256×256 input in the page from the sample.
    const sq = await page.evaluate(async () => {
      const bmp = await createImageBitmap(await (await fetch("samples/citrus.jpg")).blob());
      const c = new OffscreenCanvas(256, 256);
      c.getContext("2d").drawImage(bmp, 0, 0, 256, 256);
      const blob = await c.convertToBlob({ type: "image/png" });
      return Array.from(new Uint8Array(await blob.arrayBuffer()));
    });
    writeFileSync(square, Buffer.from(sq));
    await decodeFile(page, square);
    // A cooler sampler than the weight file's: the link must carry it, and the page must match
    // the CLI's --temperature.
    const before = await snapshot(page);
    await page.fill("#temperature", "0.7");
    await page.dispatchEvent("#temperature", "change");
    await settled(page, before);
    const first = await page.evaluate(() => ({ rgba: Array.from(window.epsvae.final.x0_hat) }));
    const want = await pngPixels(page, cliReference(square, 3, 0, 0.7));
    assert.ok(maxDiff(first.rgba, want.rgba) <= 2, `τ = 0.7 differs from the CLI by ${maxDiff(first.rgba, want.rgba)}/255`);
    await page.click("#copy-link");
    await page.waitForFunction(() => window.epsvae.link, null, { timeout: TIMEOUT });
    const link = await page.evaluate(() => window.epsvae.link);
    // 4 channels of 32×32 at 8 bits, deflated and in base64url: about 4,100 values' worth of text.
    assert.ok(link.length < 7000, `link is ${link.length} characters`);
    console.log(`f8 link of a 256² image: ${link.length} characters`);
    assert.match(link, /[?&]preset=small-f8(&|#)/);
    assert.match(link, /&temp=0\.7&/);
    const fresh = await b.newContext(NO_SW);
    const p2 = await fresh.newPage();
    p2.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
    await p2.goto(link);
    await p2.waitForFunction(() => document.body.dataset.done || !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.equal(await p2.$eval("#error", (e) => (e.hidden ? "" : e.textContent)), "");
    assert.equal(await p2.$eval("#temperature", (e) => e.value), "0.7");
    const again = await p2.evaluate(() => Array.from(window.epsvae.final.x0_hat));
    const d = maxDiff(first.rgba, again);
    assert.ok(d <= 2, `the link's decode differs from the original's by ${d}/255`);
    // The page opened from the link looks finished: the latent is drawn (not blank), the panels a
    // link cannot fill say why, the formula shows the file's preconditioning, and the metrics say
    // why there are none.
    const look = await p2.evaluate(() => {
      const c = document.getElementById("c-latent");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let lo = 255, hi = 0;
      for (let i = 0; i < px.length; i += 4) { lo = Math.min(lo, px[i]); hi = Math.max(hi, px[i]); }
      return {
        latent: [c.width, c.height, hi - lo],
        caption: document.getElementById("cap-latent").textContent,
        original: document.getElementById("c-input").dataset.placeholder || "",
        vae: document.getElementById("c-vae").dataset.placeholder || "",
        velocity: document.getElementById("velocity").textContent,
        notch: document.getElementById("notch").textContent,
        metrics: document.querySelector("#metrics tbody").textContent,
      };
    });
    assert.ok(look.latent[0] > 0 && look.latent[1] > 0 && look.latent[2] > 20, `latent panel ${look.latent}`);
    assert.match(look.caption, /latent z: 4 channels of 32×32/);
    assert.match(look.original, /not in the link/);
    assert.match(look.vae, /does not carry/);
    assert.match(look.velocity, /c_?skip.*c_?out|cskip.*cout/);
    // The f8 file's output notch (flow.output_notch = 4) is stated where x̂0 is.
    assert.match(look.notch, /9-tap notch 1 − sin8\(ω\/2\)/);
    assert.match(look.metrics, /a link does not carry the original/);
    // A person's own image after the link gets its metrics again.
    await decodeFile(p2, square);
    const rows = await p2.$$eval("#metrics tbody tr", (r) => r.map((x) => x.textContent));
    assert.ok(rows.length >= 1 && /^ε-VAE\d/.test(rows[0]), `metrics after the link: ${rows}`);
  } finally {
    await b.close();
  }
});

test("bad inputs show their error and the page still decodes the next valid input", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    // Corrupt weights: the page says so; the cache is not poisoned, so a reload recovers.
    const context = await b.newContext(NO_SW);
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
    await page.route("**/*.safetensors", async (route) => {
      const res = await route.fetch();
      const body = Buffer.from(await res.body());
      body[body.length - 100] ^= 0xff;
      await route.fulfill({ response: res, body });
    });
    await page.goto(`${origin}/?backend=cpu`);
    await page.waitForFunction(() => !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#error", (e) => e.textContent), /corrupted|SHA-256/);
    // The page stops at the first corrupt file while the handler may still be corrupting the
    // second one; the reload cancels that request, so its late fulfil must not fail the test.
    await page.unrouteAll({ behavior: "ignoreErrors" });
    await page.reload();
    await ready(page);

    // A file that is not an image.
    const notImage = join(scratch, "notes.png");
    writeFileSync(notImage, "these are notes, not pixels");
    await page.setInputFiles("#file", notImage);
    await page.waitForFunction(() => !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#error", (e) => e.textContent), /could not decode the image: notes\.png \(27 bytes.*starts with "these ar"\) is not an image/);
    // A PNG cut off after its first 64 bytes: named as a damaged PNG.
    const cut = join(scratch, "cut.png");
    writeFileSync(cut, readFileSync(input).subarray(0, 64));
    await page.setInputFiles("#file", cut);
    await page.waitForFunction(() => /cut\.png/.test(document.getElementById("error").textContent), null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#error", (e) => e.textContent), /cut\.png \(64 bytes\) starts like a PNG file but the browser could not decode it/);
    const ok = await decodeFile(page, input);
    assert.equal(ok.frames, 3);

    // A malformed link.
    await page.goto(`${origin}/?backend=cpu#v=1&steps=3&seed=0&z=AAAAbroken`);
    await page.waitForFunction(() => !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#error", (e) => e.textContent), /link/);
    // A link whose temperature is out of range names it.
    await page.goto(`${origin}/?backend=cpu#v=1&steps=3&seed=0&temp=7&z=AAAA`);
    await page.waitForFunction(() => /temp=/.test(document.getElementById("error").textContent), null, { timeout: TIMEOUT });
    assert.match(await page.$eval("#error", (e) => e.textContent), /temp=7 is not a number in 0\.\.2/);
    const ok2 = await decodeFile(page, input);
    assert.equal(ok2.frames, 3);
    // A link whose header claims the (default f8) model's 4 channels on a 1024² grid for an 8192²
    // image (an 8192² decode): refused from its 17 header bytes, and the module's memory does not
    // grow. (The goto()s above changed only the fragment, so the page kept its f8 model.)
    const memBefore = await page.evaluate(() => window.epsvae.memoryBytes());
    const huge = await page.evaluate(async () => {
      const head = new Uint8Array([0x65, 0x56, 1, 8, 4, 0, 4, 0, 4, 0, 0x20, 0, 0x20, 0, 0, 0, 0]);
      const packed = new Uint8Array(await new Response(new Blob([head]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
      return btoa(String.fromCharCode(...packed)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    });
    await page.evaluate((z) => { location.hash = `v=1&steps=3&seed=0&z=${z}`; }, huge);
    await page.waitForFunction(() => /does not fit/.test(document.getElementById("error").textContent), null, { timeout: TIMEOUT });
    assert.equal(
      await page.$eval("#error", (e) => e.textContent),
      "the link's latent (4 channels of 1024×1024 for a 8192×8192 image) does not fit this model: images up to 2048 pixels a side",
    );
    const grown = (await page.evaluate(() => window.epsvae.memoryBytes())) - memBefore;
    assert.ok(grown < 16 << 20, `the oversized link grew the module's memory by ${grown} bytes`);
    const ok3 = await decodeFile(page, input);
    assert.equal(ok3.frames, 3);
  } finally {
    await b.close();
  }
});

test("the page explains what it shows: weights, latent size, compression", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    const { page } = await open(b, "?backend=cpu");
    await ready(page);
    // The default is the f = 8 pair.
    assert.match(await page.$eval("#weights-note", (e) => e.textContent), /^Weights: small-f8 preset, int8, /);
    assert.equal(await page.$eval("#preset", (e) => e.value), "small-f8");
    await decodeFile(page, input);
    // 96×80 at f = 8: 4 channels of 12×10.
    assert.match(await page.$eval("#cap-latent", (e) => e.textContent), /4 channels of 12×10; 480 values for 23040 image bytes \(48:1\)/);
    const manifest = JSON.parse(readFileSync(join(site, "weights/manifest.json")));
    const withBaseline = manifest.some((e) => e.parts.includes("baseline"));
    assert.equal(await page.$$eval("#metrics tbody tr", (r) => r.length), withBaseline ? 2 : 1, "ε-VAE (and VAE baseline) metrics");
    // A filmstrip of the three steps' x̂0 and a PSNR/SSIM chart with a point per step; the chart's
    // last PSNR is the metrics table's.
    assert.equal(await page.$$eval("#filmstrip canvas", (c) => c.filter((x) => x.width === 96 && x.height === 80).length), 3);
    const steps = await page.evaluate(() => window.epsvae.stepMetrics);
    assert.equal(steps.length, 3);
    assert.equal(await page.$$eval("#step-chart circle", (c) => c.length), 6);
    const shown = await page.$eval("#metrics tbody tr td:nth-child(2)", (e) => e.textContent);
    assert.equal(steps[2].psnr.toFixed(2), shown);
    // The loupe shows the same pixels of every panel, magnified: it opens at the centre and follows
    // the pointer; each magnified pixel is the panel's pixel at the named position.
    assert.equal(await page.$eval("#loupe", (e) => e.hidden), false, "the loupe opens with the first frame");
    const box = await page.$eval("#c-x0", (c) => { const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; });
    await page.mouse.move(box[0] + box[2] * 0.2, box[1] + box[3] * 0.25);
    const lp = await page.evaluate(() => {
      const { x, y, size, zoom } = window.epsvae.loupe;
      const mismatch = [];
      for (const name of ["input", "xt", "x0", "vae"]) {
        const src = document.getElementById(`c-${name}`);
        const a = src.getContext("2d").getImageData(x, y, size, size).data;
        const b = document.getElementById(`z-${name}`).getContext("2d").getImageData(0, 0, size * zoom, size * zoom).data;
        for (let j = 0; j < size; j += 3) {
          for (let i = 0; i < size; i += 3) {
            if (x + i >= src.width || y + j >= src.height) continue;
            const pa = 4 * (j * size + i), pb = 4 * ((j * zoom + 2) * size * zoom + i * zoom + 2);
            for (let c = 0; c < 3; c++) if (a[pa + c] !== b[pb + c]) mismatch.push(`${name} (${x + i}, ${y + j})`);
          }
        }
      }
      return { x, y, size, zoom, mismatch: mismatch.slice(0, 5), info: document.getElementById("loupe-info").textContent };
    });
    // 96×80 image: the pointer at 20%/25% of the panel aims at pixel (19, 20) (±1 for the
    // pointer's rounding), so the 32² window starts at about (3, 4).
    assert.deepEqual([lp.size, lp.zoom], [32, 5]);
    assert.ok(Math.abs(lp.x - 3) <= 1 && Math.abs(lp.y - 4) <= 1, lp.info);
    assert.deepEqual(lp.mismatch, [], "magnified pixels differ from the panels'");
    // Each panel frames the loupe's pixels: the frame's box is the 32² window in screen pixels.
    const mark = await page.$eval("#c-x0", (c) => {
      const m = c.parentElement.querySelector(".loupe-mark").getBoundingClientRect();
      const r = c.getBoundingClientRect();
      const k = r.width / c.width;
      return { dx: (m.x - r.x) / k, dy: (m.y - r.y) / k, side: m.width / k };
    });
    assert.ok(Math.abs(mark.dx - lp.x) < 0.5 && Math.abs(mark.dy - lp.y) < 0.5 && Math.abs(mark.side - 32) < 0.5, JSON.stringify(mark));
    // What the decoder invents: 3 seeds' mean and spread. Averaging what the seeds disagree on
    // raises PSNR above a single seed's; the spread map is not blank.
    await page.fill("#spread-k", "3");
    await page.click("#spread-run");
    await page.waitForFunction(() => document.body.dataset.spread || !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.equal(await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent)), "");
    const sp = await page.evaluate(() => {
      const c = document.getElementById("c-spread");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let hi = 0;
      for (let i = 0; i < px.length; i += 4) hi = Math.max(hi, px[i]);
      return { ...window.epsvae.spread, size: [c.width, c.height], hi, info: document.getElementById("spread-info").textContent };
    });
    assert.deepEqual(sp.size, [96, 80]);
    assert.equal(sp.k, 3);
    assert.ok(sp.meanSpread > 0.5 && sp.hi > 40, `spread ${sp.meanSpread}/255, brightest ${sp.hi}`);
    assert.ok(sp.psnrMean > sp.psnrSingle, `mean of the seeds ${sp.psnrMean} dB, one seed ${sp.psnrSingle} dB`);
    assert.match(sp.info, /3 seeds from 0, 3 steps/);
    console.log(`spread: ${sp.info}`);
  } finally {
    await b.close();
  }
});

test("?preset=small loads the f = 16 pair, decodes as the CLI does, and an unknown preset is named", { timeout: TIMEOUT }, async () => {
  const b = await browser(false);
  try {
    const { page, requests } = await open(b, "?backend=cpu&preset=small");
    await ready(page);
    assert.match(await page.$eval("#weights-note", (e) => e.textContent), /^Weights: small preset, int8, /);
    assert.equal(await page.$eval("#preset", (e) => e.value), "small");
    const got = await decodeFile(page, input);
    // 96×80 at f = 16: 8 channels of 6×5.
    assert.match(await page.$eval("#cap-latent", (e) => e.textContent), /8 channels of 6×5; 240 values for 23040 image bytes \(96:1\)/);
    const want = await pngPixels(page, cliReference(input, 3, 0, null, "small"));
    const d = maxDiff(got.rgba, want.rgba);
    assert.ok(d <= 2, `max difference ${d}/255 from the CLI`);
    const weights = [...new Set(requests.filter((u) => u.endsWith(".safetensors")).map((u) => u.split("/").pop()))].sort();
    assert.deepEqual(weights, ["epsvae-small.safetensors", "vae-small.safetensors"]);
    // Its link names the preset; the same link without it (as links were written while f16 was
    // the default) still opens with the f16 pair and decodes the same image.
    await page.click("#copy-link");
    await page.waitForFunction(() => window.epsvae.link, null, { timeout: TIMEOUT });
    const link = await page.evaluate(() => window.epsvae.link);
    assert.match(link, /[?&]preset=small(&|#)/);
    const legacy = link.replace(/([?&])preset=small(&|(?=#))/, (m, a, c) => (a === "?" && c === "&" ? "?" : c === "&" ? a : ""));
    assert.ok(!legacy.includes("preset="), legacy);
    const fresh = await (await b.newContext(NO_SW)).newPage();
    fresh.on("pageerror", (e) => pageErrors.push(`${e.name}: ${e.message}`));
    await fresh.goto(legacy);
    await fresh.waitForFunction(() => document.body.dataset.done || !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    assert.equal(await fresh.$eval("#error", (e) => (e.hidden ? "" : e.textContent)), "");
    assert.match(await fresh.$eval("#weights-note", (e) => e.textContent), /^Weights: small preset, int8, /);
    const again = await fresh.evaluate(() => Array.from(window.epsvae.final.x0_hat));
    assert.ok(maxDiff(got.rgba, again) <= 2, `the legacy link's decode differs by ${maxDiff(got.rgba, again)}/255`);
    const bad = await open(b, "?backend=cpu&preset=f3");
    await bad.page.waitForFunction(() => !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
    const err = await bad.page.$eval("#error", (e) => e.textContent);
    assert.match(err, /\?preset=f3: weights\/manifest\.json has no such model; expected one of /);
    assert.ok(err.includes("small-f8") && /\bsmall\b(?!-f8)/.test(err), err);
  } finally {
    await b.close();
  }
});
