// The page: streams the weights, picks a backend, takes an image, and drives the denoiser one Euler
// step per animation frame so every x_t and x̂0 is shown as it is computed. The model runs in
// worker.js; this file only draws and keeps state.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_SIDE = Math.max(32, Math.min(2048, parseInt(params.get("max") || "512", 10) || 512));
if (params.get("embed") === "1") document.body.classList.add("embed");
// Which operating point: the manifest's entries of this preset are loaded. f8 (48:1) unless the
// query names another (?preset=small: f16, 96:1). Every link this page writes names its preset;
// a link with none was made while f16 was the default, so it holds an f16 latent and opens with
// the f16 pair.
const DEFAULT_PRESET = "small-f8";
const LEGACY_LINK_PRESET = "small";
const PRESET = params.get("preset") || (location.hash.length > 1 ? LEGACY_LINK_PRESET : DEFAULT_PRESET);

// ---- worker RPC ------------------------------------------------------------------------------
let worker = null;
let nextId = 0;
const pending = new Map();
function startWorker() {
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (e) => {
    const m = e.data;
    if (m.type === "progress") return onProgress(m);
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
  };
  worker.onerror = (e) => showError(`the model worker failed: ${e.message || "unknown error"}`);
}
function call(cmd, ...args) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, cmd, args });
  });
}

// ---- state -----------------------------------------------------------------------------------
const state = {
  ready: false, // encoder and ε-decoder weights are in
  encoderReady: false, // the encoder is in: images can be encoded (the decoder may still stream)
  decoderReady: null, // a promise: resolves once `ready`
  image: null, // {width, height, rgba}
  frames: [], // frames of the current run
  shown: -1,
  playing: false,
  runId: 0, // a new input or setting bumps it, cancelling the run in progress
  grid: [],
  timings: {},
  baseline: null,
  hasBaseline: false,
  manifest: null,
  gamma: 0.6,
  temperature: 1, // the weight file's default τ
  offline: false, // sw.js is installed and keeps this page for offline use
};
window.epsvae = state; // for tests and the curious
state.memoryBytes = () => call("memoryBytes");

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = false;
  setStatus("error: see above");
}
function clearError() {
  $("error").hidden = true;
}
function setStatus(s) {
  $("status").textContent = s;
}
function timing(name, ms) {
  state.timings[name] = ms;
  $("timing-list").innerHTML = Object.entries(state.timings)
    .map(([k, v]) => `<li>${k}: ${v.toFixed(0)} ms</li>`)
    .join("");
}

// ---- drawing ---------------------------------------------------------------------------------
function draw(canvas, rgba, w, h) {
  delete canvas.dataset.placeholder;
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), w, h), 0, 0);
}
// The loupe: the same LOUPE_SRC² pixels of the four panels side by side, magnified without
// smoothing, so the texture each decoder draws (or invents) can be compared pixel by pixel. It
// follows the pointer over any panel (a tap on a phone) and stays where it was left; it is redrawn
// whenever a panel changes. Every panel shares the image's pixel grid (frames are padded at the
// right and bottom only), so one position names the same spot in all of them.
const LOUPE_SRC = 32;
const LOUPE_ZOOM = 5;
const LOUPE_PANELS = ["input", "xt", "x0", "vae"];
const loupe = { x: null, y: null };
function drawLoupe() {
  const ref = $("c-x0");
  if (loupe.x === null || !state.frames.length) return;
  const side = LOUPE_SRC * LOUPE_ZOOM;
  const x0 = Math.max(0, Math.min(loupe.x - LOUPE_SRC / 2, ref.width - LOUPE_SRC));
  const y0 = Math.max(0, Math.min(loupe.y - LOUPE_SRC / 2, ref.height - LOUPE_SRC));
  for (const name of LOUPE_PANELS) {
    const src = $(`c-${name}`);
    const dst = $(`z-${name}`);
    if (src.dataset.placeholder || !src.width) {
      placeholder(dst, ["not in this view"], side);
      continue;
    }
    dst.width = side;
    dst.height = side;
    const ctx = dst.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#eee";
    ctx.fillRect(0, 0, side, side);
    const w = Math.min(LOUPE_SRC, src.width - x0);
    const h = Math.min(LOUPE_SRC, src.height - y0);
    if (w > 0 && h > 0) ctx.drawImage(src, x0, y0, w, h, 0, 0, w * LOUPE_ZOOM, h * LOUPE_ZOOM);
  }
  state.loupe = { x: x0, y: y0, size: LOUPE_SRC, zoom: LOUPE_ZOOM };
  markLoupe(x0, y0);
  $("loupe-info").textContent = `${LOUPE_ZOOM}× zoom of the ${LOUPE_SRC}×${LOUPE_SRC} pixels at (${x0}, ${y0}) in each panel: move the pointer over an image (or tap it) to move it.`;
  $("loupe").hidden = false;
}
// A frame on each panel around the pixels the loupe shows: an element over the canvas, so the
// panel's own pixels (which the loupe and the metrics read) stay untouched.
function markLoupe(x0, y0) {
  for (const name of LOUPE_PANELS) {
    const c = $(`c-${name}`);
    let mark = c.parentElement.querySelector(".loupe-mark");
    if (!mark) {
      mark = document.createElement("div");
      mark.className = "loupe-mark";
      c.parentElement.append(mark);
    }
    mark.hidden = !c.width || !!c.dataset.placeholder;
    const k = c.clientWidth / (c.width || 1);
    Object.assign(mark.style, { left: `${c.offsetLeft + x0 * k}px`, top: `${c.offsetTop + y0 * k}px`, width: `${LOUPE_SRC * k}px`, height: `${LOUPE_SRC * k}px` });
  }
}
function aimLoupe(e) {
  const c = e.currentTarget;
  if (!c.width || !c.clientWidth) return;
  loupe.x = Math.round((e.offsetX * c.width) / c.clientWidth);
  loupe.y = Math.round((e.offsetY * c.height) / c.clientHeight);
  drawLoupe();
}
for (const name of LOUPE_PANELS) {
  $(`c-${name}`).addEventListener("pointermove", aimLoupe);
  $(`c-${name}`).addEventListener("pointerdown", aimLoupe);
}

function drawGrid(current) {
  const g = state.grid;
  const svg = $("grid");
  if (!g.length) return (svg.innerHTML = "");
  const x = (i) => 20 + (i * 280) / (g.length - 1);
  const y = (t) => 100 - t * 85;
  let s = `<line x1="20" y1="100" x2="300" y2="100" stroke="#999"/><line x1="20" y1="15" x2="20" y2="100" stroke="#999"/>`;
  s += `<text x="2" y="19" font-size="10">1</text><text x="2" y="103" font-size="10">0</text><text x="150" y="116" font-size="10">step i</text>`;
  s += `<polyline fill="none" stroke="#4b6bdc" stroke-width="2" points="${g.map((t, i) => `${x(i)},${y(t)}`).join(" ")}"/>`;
  g.forEach((t, i) => {
    const on = i === current;
    s += `<circle cx="${x(i)}" cy="${y(t)}" r="${on ? 6 : 3}" fill="${on ? "#e0503c" : "#4b6bdc"}"><title>t${i} = ${t.toFixed(4)}</title></circle>`;
    s += `<text x="${x(i) - 8}" y="${y(t) - 8}" font-size="9">${t.toFixed(3)}</text>`;
  });
  svg.innerHTML = s;
}
// A panel that has nothing to show says why, instead of staying an empty grey box.
function placeholder(canvas, lines, side = 256) {
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#eee";
  ctx.fillRect(0, 0, side, side);
  ctx.fillStyle = "#555";
  ctx.font = "15px sans-serif";
  ctx.textAlign = "center";
  lines.forEach((l, i) => ctx.fillText(l, side / 2, side / 2 + (i - (lines.length - 1) / 2) * 20));
  canvas.dataset.placeholder = lines.join(" ");
}

// The velocity the decoder's file uses: plain v̂ = G(…), or preconditioned (c_skip·x_t + c_out·G)
// with the coefficients at time t (the same formulas as flow.rs's precondition_scales).
function preconditionScales(t) {
  const g2 = (state.gamma * state.sigmaData) ** 2;
  const s2 = ((1 - t) * state.gamma * state.sigmaData) ** 2 + t * t;
  const cov = t - (1 - t) * g2;
  return [cov / s2, Math.sqrt(Math.max(0, 1 + g2 - (cov * cov) / s2))];
}
function showVelocityFormula(t) {
  const el = $("velocity");
  if (!state.precondition) {
    el.innerHTML = "v̂ = G(x<sub>t</sub>/s(t), t, z) &nbsp; (the UNet predicts the velocity)";
    return;
  }
  const at = t === null ? "" : (() => {
    const [cs, co] = preconditionScales(t);
    return ` &nbsp; at t = ${t.toFixed(3)}: c<sub>skip</sub> = ${cs.toFixed(3)}, c<sub>out</sub> = ${co.toFixed(3)}`;
  })();
  el.innerHTML = `v̂ = c<sub>skip</sub>(t)·x<sub>t</sub> + c<sub>out</sub>(t)·G(x<sub>t</sub>/s(t), t, z) &nbsp; (preconditioned; σ<sub>data</sub> = ${state.sigmaData})${at}`;
}

function showFrame(i) {
  const f = state.frames[i];
  if (!f) return;
  state.shown = i;
  draw($("c-xt"), f.x_t, f.width, f.height);
  draw($("c-x0"), f.x0_hat, f.width, f.height);
  $("cap-xt").innerHTML = `noisy state x<sub>t</sub> at t = ${f.t.toFixed(4)}`;
  $("cap-x0").innerHTML = `estimate x̂<sub>0</sub> from step ${f.index + 1} of ${f.steps}${f.done ? " (final image)" : ""}`;
  $("scrub").max = String(Math.max(0, state.frames.length - 1));
  $("scrub").value = String(i);
  $("frame-label").textContent = `step ${f.index + 1}/${f.steps}`;
  drawGrid(f.index);
  showVelocityFormula(f.t);
  syncFilmstrip();
  // The loupe starts at the image's centre.
  if (loupe.x === null) [loupe.x, loupe.y] = [f.width >> 1, f.height >> 1];
  drawLoupe();
}

// Every step's x̂0 as a thumbnail under the scrubber; the shown one is outlined.
function syncFilmstrip() {
  const strip = $("filmstrip");
  while (strip.children.length > state.frames.length) strip.lastChild.remove();
  for (let i = strip.children.length; i < state.frames.length; i++) {
    const f = state.frames[i];
    const c = document.createElement("canvas");
    draw(c, f.x0_hat, f.width, f.height);
    c.title = `x̂0 after step ${f.index + 1} of ${f.steps} (t = ${f.t.toFixed(3)} → ${f.t_next.toFixed(3)})`;
    c.addEventListener("click", () => showFrame(i));
    strip.append(c);
  }
  [...strip.children].forEach((c, i) => c.classList.toggle("shown", i === state.shown));
}

// PSNR and SSIM of each step's x̂0 against the original: two lines over the step index.
function drawStepChart(points) {
  const svg = $("step-chart");
  if (!points.length) {
    svg.innerHTML = `<text x="10" y="75" font-size="11">no original to compare with (a link carries only the latent)</text>`;
    return;
  }
  const n = points.length;
  const x = (i) => (n === 1 ? 160 : 40 + (i * 240) / (n - 1));
  const ps = points.map((p) => p.psnr);
  const lo = Math.floor(Math.min(...ps) - 0.5), hi = Math.ceil(Math.max(...ps) + 0.5);
  const yp = (v) => 125 - ((v - lo) / Math.max(hi - lo, 1e-6)) * 105;
  const ys = (v) => 125 - v * 105; // SSIM on 0..1
  let s = `<line x1="40" y1="125" x2="280" y2="125" stroke="#999"/><line x1="40" y1="20" x2="40" y2="125" stroke="#999"/><line x1="280" y1="20" x2="280" y2="125" stroke="#999"/>`;
  s += `<text x="2" y="24" font-size="10" fill="#4b6bdc">${hi} dB</text><text x="2" y="128" font-size="10" fill="#4b6bdc">${lo} dB</text>`;
  s += `<text x="284" y="24" font-size="10" fill="#d9822b">1</text><text x="284" y="128" font-size="10" fill="#d9822b">0</text>`;
  s += `<text x="226" y="147" font-size="10">Euler step</text>`;
  const line = (f, colour) => `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map((p, i) => `${x(i)},${f(p)}`).join(" ")}"/>`;
  s += line((p) => yp(p.psnr), "#4b6bdc") + line((p) => ys(p.ssim), "#d9822b");
  points.forEach((p, i) => {
    s += `<circle cx="${x(i)}" cy="${yp(p.psnr)}" r="3" fill="#4b6bdc"><title>step ${i + 1}: ${p.psnr.toFixed(2)} dB</title></circle>`;
    s += `<circle cx="${x(i)}" cy="${ys(p.ssim)}" r="3" fill="#d9822b"><title>step ${i + 1}: SSIM ${p.ssim.toFixed(3)}</title></circle>`;
    s += `<text x="${x(i) - 3}" y="137" font-size="9">${i + 1}</text>`;
  });
  svg.innerHTML = s;
}

// ---- weights ---------------------------------------------------------------------------------
// encoderIn() is called when the ε-VAE file's encoder part has arrived and checked out.
const loadState = { slots: {}, t0: 0, encoderIn: () => {} };
function onProgress(m) {
  loadState.slots[m.slot] = m;
  const all = Object.values(loadState.slots);
  const received = all.reduce((a, s) => a + s.received, 0);
  const total = state.manifestTotal || all.reduce((a, s) => a + s.total, 0);
  const secs = (performance.now() - loadState.t0) / 1000;
  const rate = received / Math.max(secs, 1e-3);
  const eta = rate > 0 ? (total - received) / rate : 0;
  $("bar").style.width = `${((100 * received) / total).toFixed(1)}%`;
  $("progress-text").textContent =
    `weights: ${(received / 1e6).toFixed(2)} of ${(total / 1e6).toFixed(2)} MB (${((100 * received) / total).toFixed(0)}%)` +
    `${m.fromCache ? ", from this browser's cache" : `, ${(rate / 1e6).toFixed(1)} MB/s, ETA ${eta.toFixed(1)} s`}`;
  state.progress = received / total;
  if (m.header && m.slot === 0) {
    state.gamma = m.header.gamma;
    state.sigmaData = m.header.sigma_data;
    state.precondition = m.header.precondition;
    $("gamma").textContent = String(m.header.gamma);
    showVelocityFormula(null);
    // The file's output notch (flow.output_notch = m): x̂0 and the image pass a (2m + 1)-tap filter
    // with response 1 − sin^(2m)(ω/2) along x and y, zero at a 2-pixel period.
    const m2 = m.header.output_notch;
    $("notch").innerHTML = m2 > 0
      ? `, then along x and y the ${2 * m2 + 1}-tap notch 1 − sin<sup>${2 * m2}</sup>(ω/2) (no 2-pixel grain; also the image)`
      : "";
    if (typeof m.header.temperature === "number" && m.header.temperature !== state.temperature) {
      state.temperature = m.header.temperature;
      $("temperature").value = String(m.header.temperature);
    }
    const p = m.header.provenance;
    $("weights-note").textContent =
      p.origin === "trained"
        ? `Weights: ${m.header.preset} preset, ${m.header.storage}, trained ${p.training_steps} steps on ${p.images_seen} images.`
        : `Weights: ${m.header.preset} preset, ${m.header.storage}, NOT TRAINED (${p.origin}): reconstructions will not resemble the input.`;
  }
  for (const part of m.parts || []) {
    if (m.slot === 0 && part === "encoder") {
      timing("encoder part in (after the downloads began)", performance.now() - loadState.t0);
      loadState.encoderIn();
    }
    if (part === "baseline") state.hasBaseline = true;
  }
}

async function loadWeights() {
  const t0 = performance.now();
  const res = await fetch("weights/manifest.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`weights/manifest.json: HTTP ${res.status}`);
  const manifest = await res.json();
  state.manifest = manifest;
  const presets = [...new Set(manifest.map((e) => e.preset))];
  if (!presets.includes(PRESET)) {
    throw new Error(`?preset=${JSON.stringify(PRESET).slice(1, -1)}: weights/manifest.json has no such model; expected one of ${presets.join(", ")}`);
  }
  const mine = manifest.filter((e) => e.preset === PRESET);
  const eps = mine.find((e) => e.parts.includes("decoder"));
  if (!eps) throw new Error(`weights/manifest.json lists no ${PRESET} file with an ε-decoder`);
  const vae = mine.find((e) => e !== eps && e.parts.includes("baseline"));
  state.manifestTotal = eps.bytes + (vae ? vae.bytes : 0);
  loadState.t0 = performance.now();
  const jobs = [call("load", 0, `weights/${eps.file}`, eps.sha256, eps.bytes)];
  if (vae) jobs.push(call("load", 1, `weights/${vae.file}`, vae.sha256, vae.bytes));
  const results = await Promise.all(jobs);
  if (eps.parts.includes("baseline") || vae) state.hasBaseline = true;
  const cap = $("c-vae").parentElement.querySelector("figcaption");
  cap.textContent = state.hasBaseline ? "VAE baseline (one pass)" : "VAE baseline: no weights shipped yet (weights/manifest.json lists none)";
  timing(results[0].fromCache ? "weights (from cache)" : "weights download", performance.now() - t0);
  state.weightsFromCache = results.every((r) => r.fromCache);
}

// ---- backend ---------------------------------------------------------------------------------
async function boot(preferred) {
  state.ready = false;
  state.encoderReady = false;
  state.runId++;
  if (worker) worker.terminate();
  for (const p of pending.values()) p.reject(new Error("restarted"));
  pending.clear();
  startWorker();
  const t0 = performance.now();
  const info = await call("init", preferred);
  timing(`wasm download + compile (${info.module === "pkg" ? "WebGPU build" : "CPU build"})`, info.ms);
  state.module = info.module;
  let backend = preferred;
  let reason = "";
  if (backend === "webgpu" && !info.gpu.available) {
    backend = "cpu";
    reason = info.gpu.reason;
  }
  let opened;
  try {
    opened = await call("open", backend);
  } catch (e) {
    if (backend !== "webgpu") throw e;
    // An adapter was offered but WebGPU did not start: the CPU lives in the other module.
    reason = e.message;
    backend = "cpu";
    const cpu = await call("init", "cpu");
    timing("wasm download + compile (CPU build, after WebGPU failed)", cpu.ms);
    state.module = cpu.module;
    opened = await call("open", backend);
  }
  timing("device init", opened.ms);
  state.backend = backend;
  $("backend").value = backend;
  const g = info.gpu;
  $("backend-info").textContent =
    backend === "webgpu"
      ? `WebGPU: ${g.name}${g.fallback ? " (software fallback adapter)" : ""}; max storage binding ${(g.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`
      : `CPU (wasm)${reason ? ` because WebGPU is unavailable: ${reason}` : ""}`;
  state.fallbackReason = reason;
  setStatus("loading weights…");
  // Both files stream at once. The encoder is the first part of the ε-VAE file: from the moment it
  // has arrived (and its SHA-256 checked out) an image can be encoded, while the decoder streams.
  // Warm-up on WebGPU: one encode and one Euler step on a small grey image, so the first kernels
  // (shader compilation and autotuning) run while the page says "loading", not on the first photo.
  // The CPU has no kernels to compile, so only WebGPU warms up.
  const encoderIn = new Promise((resolve) => (loadState.encoderIn = resolve));
  const weights = loadWeights();
  state.decoderReady = (async () => {
    await weights;
    if (backend === "webgpu") {
      const tw = performance.now();
      await call("begin", 1, 0); // on the warm-up's latent, or on an image encoded meanwhile
      await call("step");
      timing("warm-up, decoder (1 step)", performance.now() - tw);
    }
    state.ready = true;
    timing("ready (total)", performance.now() - t0);
  })();
  state.decoderReady.catch(() => {}); // its error reaches the person through the await below
  await Promise.race([encoderIn, weights]);
  if (backend === "webgpu") {
    setStatus("warming up (first kernels)…");
    const tw = performance.now();
    const n = 64;
    await call("encode", new Uint8Array(n * n * 4).fill(128), n, n);
    timing(`warm-up, encoder (${n}×${n})`, performance.now() - tw);
  }
  state.encoderReady = true;
  const where = backend === "webgpu" ? "WebGPU" : "CPU";
  if (!state.ready) setStatus(`encoder ready on ${where}: choose an image (the decoder is still arriving)`);
  await state.decoderReady;
  setStatus(`ready on ${where}: choose an image`);
}

// ---- input -----------------------------------------------------------------------------------
async function fileToImage(blob, name) {
  let bmp;
  try {
    bmp = await createImageBitmap(blob);
  } catch {
    throw new Error(await undecodable(blob, name));
  }
  const s = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
  const w = Math.max(1, Math.round(bmp.width * s));
  const h = Math.max(1, Math.round(bmp.height * s));
  const c = new OffscreenCanvas(w, h);
  const ctx = c.getContext("2d");
  ctx.drawImage(bmp, 0, 0, w, h);
  bmp.close();
  return { width: w, height: h, rgba: ctx.getImageData(0, 0, w, h).data };
}

// Why the browser could not decode a file, from its first bytes: a known image format that is
// damaged, or something that is not an image at all.
// [format, bytes, offset]: WebP is a RIFF file (as WAV and AVI are) with "WEBP" at byte 8.
const SIGNATURES = [
  ["PNG", [0x89, 0x50, 0x4e, 0x47], 0],
  ["JPEG", [0xff, 0xd8, 0xff], 0],
  ["GIF", [0x47, 0x49, 0x46, 0x38], 0],
  ["BMP", [0x42, 0x4d], 0],
  ["WebP", [0x57, 0x45, 0x42, 0x50], 8],
];
async function undecodable(blob, name) {
  const head = new Uint8Array(await blob.slice(0, 16).arrayBuffer());
  const size = `${blob.size.toLocaleString()} bytes`;
  if (blob.size === 0) return `could not decode the image: ${name} is empty (0 bytes); choose a PNG, JPEG, WebP, GIF or BMP file`;
  const known = SIGNATURES.find(([, sig, at]) => sig.every((b, i) => head[at + i] === b));
  if (known) return `could not decode the image: ${name} (${size}) starts like a ${known[0]} file but the browser could not decode it (damaged, truncated, or too large to hold in memory); try re-saving it smaller`;
  const text = Array.from(head.slice(0, 8), (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
  return `could not decode the image: ${name} (${size}, ${blob.type || "unknown type"}, starts with "${text}") is not an image this browser can read; choose a PNG, JPEG, WebP, GIF or BMP file`;
}

async function useImage(img, source) {
  clearError();
  if (!state.encoderReady) throw new Error("the weights are still loading; try again in a moment");
  state.image = img;
  state.fromLink = false; // a person's own image gets its metrics, after a link too
  const id = ++state.runId;
  draw($("c-input"), img.rgba, img.width, img.height);
  setStatus(`encoding ${source} (${img.width}×${img.height})…`);
  const enc = await call("encode", img.rgba, img.width, img.height);
  timing("encode", enc.ms);
  await showLatentInfo(enc);
  if (!state.ready) {
    // Encoded while the decoder streams: the latent is shown now, the decode follows it in.
    timing("encode done, before the decoder was in (after the downloads began)", performance.now() - loadState.t0);
    setStatus(`encoded ${source}; decoding as soon as the decoder has arrived…`);
    await state.decoderReady;
    if (id !== state.runId) return; // a newer image or setting took over meanwhile
  }
  await afterLatent();
}

async function showLatentInfo(enc) {
  const lat = await call("latentImage");
  draw($("c-latent"), lat.rgba, lat.width, lat.height);
  const bytesIn = enc.width * enc.height * 3;
  const values = enc.channels * enc.latent_height * enc.latent_width;
  $("cap-latent").textContent = `latent z: ${enc.channels} channels of ${enc.latent_width}×${enc.latent_height}; ${values} values for ${bytesIn} image bytes (${(bytesIn / values).toFixed(0)}:1)`;
}

async function afterLatent() {
  state.baseline = null;
  if (state.hasBaseline && state.image) {
    try {
      const b = await call("baseline");
      timing("VAE baseline decode", b.ms);
      state.baseline = b.rgba;
      draw($("c-vae"), b.rgba, state.image.width, state.image.height);
      drawLoupe();
    } catch (e) {
      showError(e.message);
    }
  }
  await run();
}

// ---- the decode loop -------------------------------------------------------------------------
function settings() {
  const steps = Math.max(1, Math.min(8, parseInt($("steps").value, 10) || 3));
  const seed = Math.max(0, Math.min(4294967295, parseInt($("seed").value, 10) || 0));
  const t = parseFloat($("temperature").value);
  const temperature = Number.isFinite(t) ? Math.round(Math.max(0, Math.min(2, t)) * 100) / 100 : state.temperature;
  $("steps").value = String(steps);
  $("seed").value = String(seed);
  $("temperature").value = String(temperature);
  return { steps, seed, temperature };
}

async function run() {
  const id = ++state.runId;
  const { steps, seed, temperature } = settings();
  state.runSettings = { steps, seed, temperature };
  state.frames = [];
  state.final = null;
  state.stepMetrics = [];
  $("filmstrip").replaceChildren(); // a new run's thumbnails replace the last run's
  $("step-chart").innerHTML = "";
  clearSpread();
  state.grid = await call("begin", steps, seed, temperature);
  $("tau").textContent = String(temperature);
  drawGrid(0);
  state.playing = true;
  setStatus(`denoising: ${steps} Euler step${steps > 1 ? "s" : ""}, seed ${seed}, temperature ${temperature}`);
  await playLoop(id);
}

async function playLoop(id) {
  while (state.playing && id === state.runId) {
    const last = state.frames[state.frames.length - 1];
    if (last && last.done) break;
    await new Promise((r) => requestAnimationFrame(r));
    if (id !== state.runId) return; // cancelled by a new input or setting
    const f = await call("step");
    if (id !== state.runId) return;
    timing(`step ${f.index + 1}`, f.ms);
    state.frames.push(f);
    showFrame(state.frames.length - 1);
  }
  const last = state.frames[state.frames.length - 1];
  if (last && last.done && id === state.runId) finished(last);
}

async function finished(f) {
  state.playing = false;
  const rows = [];
  state.stepMetrics = [];
  if (state.image && !state.fromLink) {
    for (const g of state.frames) {
      const [p, s] = await call("metrics", state.image.rgba, g.x0_hat, g.width, g.height);
      state.stepMetrics.push({ psnr: p, ssim: s });
    }
    const { psnr: p, ssim: s } = state.stepMetrics[state.stepMetrics.length - 1];
    rows.push(["ε-VAE", p, s]);
    if (state.baseline) {
      const [pb, sb] = await call("metrics", state.image.rgba, state.baseline, f.width, f.height);
      rows.push(["VAE baseline", pb, sb]);
    }
  }
  $("metrics").querySelector("tbody").innerHTML = state.fromLink
    ? `<tr><td colspan="3">no metrics: a link does not carry the original image</td></tr>`
    : rows.map(([n, p, s]) => `<tr><td>${n}</td><td>${p.toFixed(2)}</td><td>${s.toFixed(4)}</td></tr>`).join("");
  drawStepChart(state.stepMetrics);
  state.final = f;
  setStatus(`done: ${f.steps} step${f.steps > 1 ? "s" : ""}, seed ${$("seed").value}, temperature ${$("temperature").value}`);
  document.body.dataset.done = String(state.runId);
}

// ---- what the decoder invents: K seeds, their mean and per-pixel spread -----------------------
function clearSpread() {
  for (const c of [$("c-mean"), $("c-spread")]) {
    c.width = c.height = 0;
  }
  $("spread-info").textContent = "";
  state.spread = null;
}

async function spread() {
  if (!state.final) throw new Error("decode an image (or open a link) first; the seeds are decoded from its latent");
  const id = ++state.runId; // a new image or setting cancels this as it cancels a run
  const k = Math.max(2, Math.min(8, parseInt($("spread-k").value, 10) || 4));
  $("spread-k").value = String(k);
  // The seeds from the finished run's own: its final image is the first one's decode.
  const { steps, seed, temperature } = state.runSettings;
  const outs = [state.final.x0_hat];
  const [w, h] = [state.final.width, state.final.height];
  for (let i = 1; i < k; i++) {
    const s = (seed + i) % 4294967296;
    $("spread-info").textContent = `decoding seed ${s} (${i + 1} of ${k})…`;
    await call("begin", steps, s, temperature);
    let f;
    do {
      f = await call("step");
      if (id !== state.runId) return;
    } while (!f.done);
    outs.push(f.x0_hat);
  }
  // Mean and standard deviation over the seeds, per pixel and channel; the spread shown is the
  // channels' root mean square, on a colour ramp whose top is 32/255.
  const n = w * h;
  const mean = new Uint8ClampedArray(n * 4);
  const heat = new Uint8ClampedArray(n * 4);
  let total = 0;
  for (let p = 0; p < n; p++) {
    let v = 0;
    for (let c = 0; c < 3; c++) {
      let s1 = 0, s2 = 0;
      for (const o of outs) {
        const x = o[p * 4 + c];
        s1 += x;
        s2 += x * x;
      }
      const m = s1 / k;
      mean[p * 4 + c] = Math.round(m);
      v += Math.max(0, s2 / k - m * m);
    }
    const sd = Math.sqrt(v / 3);
    total += sd;
    const a = Math.min(1, sd / 32);
    // black → magenta → pink → white
    heat[p * 4] = 255 * Math.min(1, 2 * a);
    heat[p * 4 + 1] = 255 * Math.max(0, 2 * a - 1);
    heat[p * 4 + 2] = 255 * (a < 0.5 ? a : Math.max(0, 1.5 * a - 0.5));
    mean[p * 4 + 3] = heat[p * 4 + 3] = 255;
  }
  draw($("c-mean"), mean, w, h);
  draw($("c-spread"), heat, w, h);
  let info = `${k} seeds from ${seed}, ${steps} step${steps > 1 ? "s" : ""}, τ ${temperature}: mean spread ${(total / n).toFixed(1)}/255`;
  state.spread = { k, meanSpread: total / n };
  if (state.image && !state.fromLink) {
    const single = [state.stepMetrics[state.stepMetrics.length - 1].psnr]; // the run's final image
    for (const o of outs.slice(1)) single.push((await call("metrics", state.image.rgba, o, w, h))[0]);
    const [pm] = await call("metrics", state.image.rgba, mean, w, h);
    const avg = single.reduce((a, b) => a + b, 0) / k;
    state.spread.psnrMean = pm;
    state.spread.psnrSingle = avg;
    info += `; PSNR of the mean ${pm.toFixed(2)} dB, of one seed ${avg.toFixed(2)} dB on average`;
  }
  if (id !== state.runId) return;
  $("spread-info").textContent = info;
  document.body.dataset.spread = String(id);
}

// ---- sharing ---------------------------------------------------------------------------------
async function copyLink() {
  const z = await call("exportLatent");
  const { steps, seed, temperature } = settings();
  // The link names its model, so it opens with the file its latent came from whatever the default.
  const q = new URLSearchParams(location.search);
  q.set("preset", PRESET);
  const url = `${location.origin}${location.pathname}?${q}#v=1&steps=${steps}&seed=${seed}&temp=${temperature}&z=${z}`;
  state.link = url;
  $("link-info").textContent = `link: ${url.length} characters (the latent is ${z.length} of them)`;
  try {
    await navigator.clipboard.writeText(url);
    $("link-info").textContent += ", copied";
  } catch {
    $("link-info").textContent += " (copy it from the address bar)";
  }
  history.replaceState(null, "", url);
}

async function openLink(hash) {
  const h = new URLSearchParams(hash.replace(/^#/, ""));
  if (h.get("v") !== "1") throw new Error(`this link's format v=${h.get("v")} is not one this page reads (v=1)`);
  const steps = parseInt(h.get("steps") || "3", 10);
  const seed = parseInt(h.get("seed") || "0", 10);
  if (!(steps >= 1 && steps <= 8)) throw new Error(`this link's steps=${h.get("steps")} is not in 1..8`);
  if (!(seed >= 0 && seed <= 4294967295)) throw new Error(`this link's seed=${h.get("seed")} is not in 0..4294967295`);
  // Links made before the temperature control have none: they decode with the weight file's.
  const temperature = h.has("temp") ? Number(h.get("temp")) : state.temperature;
  if (!(h.get("temp") !== "" && temperature >= 0 && temperature <= 2)) throw new Error(`this link's temp=${h.get("temp")} is not a number in 0..2`);
  const z = h.get("z");
  if (!z) throw new Error("this link has no latent (z=…)");
  $("steps").value = String(steps);
  $("seed").value = String(seed);
  $("temperature").value = String(temperature);
  const info = await call("importLatent", z);
  state.fromLink = true;
  state.image = null;
  state.runId++;
  // What a link carries (the latent) is drawn; what it cannot carry is labelled, not left blank.
  await showLatentInfo(info);
  placeholder($("c-input"), ["the original is not in the link:", "a link carries only the latent z"]);
  placeholder($("c-vae"), ["the VAE baseline decodes its own", "encoder's latent, which a link", "does not carry"]);
  if (!info.weights_match) setStatus("note: this link was made with other weights; the image may differ");
  await run();
}

// ---- wiring ----------------------------------------------------------------------------------
async function guarded(f) {
  try {
    await f();
  } catch (e) {
    if (e.message !== "restarted") showError(e.message);
  }
}
$("file").addEventListener("change", (e) => guarded(async () => {
  const f = e.target.files[0];
  if (f) await useImage(await fileToImage(f, f.name), f.name);
  e.target.value = "";
}));
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const f = e.dataTransfer.files[0];
  if (f) guarded(async () => useImage(await fileToImage(f, f.name), f.name));
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === "file");
  if (item) guarded(async () => useImage(await fileToImage(item.getAsFile(), "the pasted item"), "pasted image"));
});
// A new setting re-runs the decode when there is something to decode and the decoder is in (an
// image encoded while the decoder streams is decoded with the settings of that moment).
const rerunnable = () => state.ready && (state.fromLink || state.image);
for (const id of ["steps", "seed", "temperature"]) $(id).addEventListener("change", () => guarded(async () => { if (rerunnable()) await run(); }));
$("another-seed").addEventListener("click", () => guarded(async () => {
  $("seed").value = String((parseInt($("seed").value, 10) + 1) >>> 0);
  if (rerunnable()) await run();
}));
$("play").addEventListener("click", () => guarded(async () => { if (!state.playing) { state.playing = true; await playLoop(state.runId); } }));
$("pause").addEventListener("click", () => { state.playing = false; });
$("step-once").addEventListener("click", () => guarded(async () => {
  state.playing = false;
  const f = await call("step");
  state.frames.push(f);
  showFrame(state.frames.length - 1);
  if (f.done) finished(f);
}));
$("replay").addEventListener("click", () => guarded(run));
$("spread-run").addEventListener("click", () => guarded(spread));
$("scrub").addEventListener("input", (e) => showFrame(parseInt(e.target.value, 10)));
$("copy-link").addEventListener("click", () => guarded(copyLink));
$("clear-cache").addEventListener("click", () => guarded(async () => { await call("clearCache"); setStatus("cached weights cleared; they download again on the next visit"); }));
$("backend").addEventListener("change", (e) => guarded(() => boot(e.target.value)));
$("preset").value = PRESET;
// Another model is another pair of files and another latent shape: reload with it in the query
// (links carry the query, so a link opens the model its latent came from).
$("preset").addEventListener("change", (e) => {
  const q = new URLSearchParams(location.search);
  if (e.target.value === DEFAULT_PRESET) q.delete("preset");
  else q.set("preset", e.target.value);
  // The latent of an open link belongs to the other model: drop it with the switch.
  location.href = `${location.pathname}?${q}`;
});

async function samples() {
  const credits = await (await fetch("samples/credits.json")).json();
  $("samples").innerHTML = credits
    .map((c) => `<img src="samples/${c.file}" alt="${c.title}" title="${c.title} — ${c.package}, ${c.licence}" data-file="${c.file}">`)
    .join("");
  $("samples").querySelectorAll("img").forEach((el) =>
    el.addEventListener("click", () => guarded(async () => {
      state.fromLink = false;
      await useImage(await fileToImage(await (await fetch(el.src)).blob(), el.dataset.file), el.dataset.file);
    })),
  );
}

window.addEventListener("hashchange", () => guarded(async () => {
  if (state.ready && location.hash.length > 1) {
    clearError();
    await openLink(location.hash);
  }
}));

// Offline after one visit: sw.js keeps the page, both modules and the samples (the worker keeps the
// weights). `state.offline` says whether this page is served through it. Without service workers
// (an old browser, a file:// page) the page works as before, online only.
async function offline() {
  if (!("serviceWorker" in navigator)) return ($("offline").textContent = "offline use: this browser has no service workers");
  try {
    await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    state.offline = true;
    $("offline").textContent = "works offline after this visit";
  } catch (e) {
    $("offline").textContent = `offline use unavailable: ${e.message}`;
  }
}

guarded(async () => {
  offline();
  await samples();
  const wanted = params.get("backend") === "cpu" ? "cpu" : "webgpu";
  await boot(wanted);
  if (location.hash.length > 1) await openLink(location.hash);
});
