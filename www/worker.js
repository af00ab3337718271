// The model runs here, off the main thread: wasm (burn) on WebGPU or on the CPU. The page talks to
// it with {id, cmd, args} messages; progress arrives as {type: "progress", ...}.
// Two builds of the module: pkg/ (WebGPU) and pkg-cpu/ (burn's CPU backend), chosen in init()
// before anything is fetched; init("cpu") again loads the CPU one if WebGPU then fails to start.
let Session, metrics, wasmMemory;

const CACHE = "epsvae-weights-v1";
let session = null;

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

async function adapterInfo() {
  if (!("gpu" in navigator)) return { available: false, reason: "this browser has no WebGPU (navigator.gpu is missing)" };
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { available: false, reason: `requestAdapter failed: ${e.message}` };
  }
  if (!adapter) return { available: false, reason: "WebGPU is present but no adapter was offered (blocked, or no usable GPU)" };
  const i = adapter.info || {};
  return {
    available: true,
    name: [i.vendor, i.architecture, i.description].filter(Boolean).join(" ") || "unnamed adapter",
    fallback: !!(adapter.isFallbackAdapter ?? i.isFallbackAdapter),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
}

// Streams one weight file into the session: from the Cache API when a copy with the manifest's
// SHA-256 is there, else from the network (then cached once verified).
async function load(slot, url, sha256, bytes) {
  const key = new Request(`${url}?sha256=${sha256}`);
  const cache = "caches" in self ? await caches.open(CACHE) : null;
  let res = cache ? await cache.match(key) : null;
  const fromCache = !!res;
  if (!res) {
    res = await fetch(url, { cache: "no-store" });
    if (!res.ok) throw new Error(`downloading ${url} failed: HTTP ${res.status}`);
  }
  const reader = res.body.getReader();
  const chunks = [];
  let received = 0;
  const t0 = performance.now();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    let out;
    try {
      out = await exclusive(() => session.pushWeights(slot, value));
    } catch (e) {
      if (cache) await cache.delete(key);
      throw new Error(`${url}: ${e.message}`);
    }
    postMessage({ type: "progress", slot, received, total: bytes, parts: out.parts, header: out.header, fromCache, ms: performance.now() - t0 });
  }
  try {
    await exclusive(() => session.finishWeights(slot));
  } catch (e) {
    if (cache) await cache.delete(key);
    throw new Error(`${url}: ${e.message}`);
  }
  const blob = new Blob(chunks);
  const digest = hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  if (digest !== sha256) {
    if (cache) await cache.delete(key);
    throw new Error(`${url}: SHA-256 ${digest}, the manifest says ${sha256} (corrupt or mismatched weights); reload to download again`);
  }
  if (cache && !fromCache) {
    await cache.put(key, new Response(blob));
    await evict(cache, key.url);
  }
  return { fromCache, bytes: received, ms: performance.now() - t0 };
}

// Once a file's new version is stored, its other versions (same URL, another SHA-256) go, and so do
// caches of earlier layouts (other names with this prefix): a visitor keeps one copy of each file.
async function evict(cache, keep) {
  const kept = new URL(keep);
  for (const req of await cache.keys()) {
    const u = new URL(req.url);
    if (u.origin === kept.origin && u.pathname === kept.pathname && u.search !== kept.search) await cache.delete(req);
  }
  for (const name of await caches.keys()) {
    if (name.startsWith("epsvae-weights-") && name !== CACHE) await caches.delete(name);
  }
}

const handlers = {
  // Loads and compiles the module: the WebGPU build when WebGPU is wanted and an adapter is
  // offered, otherwise the CPU-only build.
  async init(preferred) {
    const gpu = await adapterInfo();
    const module = preferred === "webgpu" && gpu.available ? "pkg" : "pkg-cpu";
    const t0 = performance.now();
    const wasm = await import(`./${module}/epsvae.js`);
    wasmMemory = (await wasm.default()).memory;
    ({ Session, metrics } = wasm);
    return { ms: performance.now() - t0, gpu, module };
  },
  async open(backend) {
    const t0 = performance.now();
    session = await Session.create(backend);
    return { ms: performance.now() - t0, backend: session.backend };
  },
  load,
  async encode(rgba, w, h) {
    const t0 = performance.now();
    const info = await session.encode(rgba, w, h);
    return { ...info, ms: performance.now() - t0 };
  },
  begin(steps, seed, temperature) {
    return Array.from(session.begin(steps, seed, temperature)); // the sampler's own time grid, for the plot
  },
  async step() {
    const t0 = performance.now();
    const f = await session.step();
    const out = { index: f.index, steps: f.steps, t: f.t, t_next: f.t_next, width: f.width, height: f.height, x_t: f.x_t, x0_hat: f.x0_hat, done: f.done, ms: performance.now() - t0 };
    f.free();
    return out;
  },
  async baseline() {
    const t0 = performance.now();
    const rgba = await session.baseline();
    return { rgba, ms: performance.now() - t0 };
  },
  async latentImage() {
    const f = await session.latentImage();
    const out = { width: f.width, height: f.height, rgba: f.x0_hat };
    f.free();
    return out;
  },
  exportLatent: () => session.exportLatent(),
  importLatent: (text) => session.importLatent(text),
  metrics: (a, b, w, h) => Array.from(metrics(a, b, w, h)),
  clearCache: () => caches.delete(CACHE),
  // The module's linear memory (it only grows): lets a test check that a bad input allocated nothing.
  memoryBytes: () => (wasmMemory ? wasmMemory.buffer.byteLength : 0),
};

// One session call at a time: the session is one Rust object, and an await inside a call (a GPU
// read) must not let another call in. Commands take turns whole, except the weight downloads: both
// files stream at once, each chunk taking its turn between commands, so an image can be encoded
// while the decoder's bytes are still arriving.
let queue = Promise.resolve();
function exclusive(fn) {
  const result = queue.then(fn);
  queue = result.then(
    () => {},
    () => {},
  );
  return result;
}
onmessage = (e) => {
  const { id, cmd, args } = e.data;
  const run = () => handlers[cmd](...(args || []));
  (cmd === "load" ? run() : exclusive(run)).then(
    (result) => postMessage({ id, ok: true, result }),
    (err) => postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) }),
  );
};
