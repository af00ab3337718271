// What the browser tests and the page tools share: the CLI binary, Chromium's flags for this
// closed network, and `serveSite(dir, port)`, which starts `epsvae serve` on `port` (default: a free one) and resolves to
// { origin, server } once it listens.
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const cli = join(process.env.CARGO_TARGET_DIR || join(root, "target"), "debug/epsvae");
// As root, without a sandbox; no background networking (the network is closed: PLATFORM.md).
export const FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

export function serveSite(dir, port = 0) {
  const server = spawn(cli, ["serve", dir, "--port", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let err = "";
    server.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) resolve({ origin: `http://127.0.0.1:${m[1]}`, server });
    });
    server.on("exit", (c) => reject(new Error(`server exited ${c}: ${err}`)));
  });
}
