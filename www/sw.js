// The service worker: the page works offline after one visit. It keeps one copy of the shell (the
// page, its scripts, both wasm modules, the weight manifest, the samples) in the Cache API and
// answers from it when the network fails; online, every request goes to the network first and the
// answer replaces the stored copy, so a new release is picked up whole on the next online visit
// (no mix of an old module with a new page). The weight files themselves are not handled here:
// the model's worker keeps them in its own cache under their SHA-256 (worker.js), so a new weight
// file is a new key and the old one is evicted there.
const CACHE = "epsvae-shell-v1";
const SHELL = [
  "./",
  "index.html",
  "app.js",
  "worker.js",
  "style.css",
  "manifest.webmanifest",
  "icon-192.png",
  "icon-512.png",
  "pkg/epsvae.js",
  "pkg/epsvae_bg.wasm",
  "pkg-cpu/epsvae.js",
  "pkg-cpu/epsvae_bg.wasm",
  "weights/manifest.json",
  "samples/credits.json",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // `no-cache`: revalidate with the server, so the first copy is not an old HTTP-cached one.
      await cache.addAll(SHELL.map((u) => new Request(u, { cache: "no-cache" })));
      const credits = await (await cache.match("samples/credits.json")).json();
      await cache.addAll(credits.map((c) => new Request(`samples/${c.file}`, { cache: "no-cache" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("epsvae-shell-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

// The key a request is stored under: the URL without its query (`?preset=small` and `?backend=cpu`
// open the same page; the fragment, which carries a link's latent, never reaches here).
function key(request) {
  const u = new URL(request.url);
  u.search = "";
  return u.href;
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    // By URL: a navigation's Request cannot be re-sent with options. `no-cache` revalidates with
    // the server, so an online visit never gets an old copy from the HTTP cache.
    const res = await fetch(request.url, { cache: "no-cache" });
    if (res.ok) await cache.put(key(request), res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match(key(request));
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  // Weight files: the worker caches them by SHA-256 and streams them; let them pass untouched.
  if (url.pathname.endsWith(".safetensors")) return;
  event.respondWith(networkFirst(request));
});
