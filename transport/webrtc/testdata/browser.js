// The browser side of TestBrowserPeerJS, run by headless Chromium with
// peerjs 1.5. It reads its configuration from /test/config, then
//
//  1. registers as cfg.browserPeer on the Go test's PeerServer and echoes
//     every frame of every connection a Go node opens to it;
//  2. for each case, connects to the Go node cfg.goPeer with the case's
//     serialization and reliability, sends frames of the case's sizes and
//     checks that each comes back unchanged (the Go node echoes);
//  3. reports "ok" (or the error) to /test/result; the Go test then dials
//     this peer.
//
// Everything worth knowing goes to /test/log, which the Go test logs.
"use strict";

function post(path, body) {
  return fetch(path, { method: "POST", body: String(body) }).catch(() => {});
}

function log(...args) {
  post("/test/log", args.map((a) => (a instanceof Error ? a.stack || a.message : typeof a === "object" ? JSON.stringify(a) : String(a))).join(" "));
}

window.addEventListener("error", (e) => log("page error:", e.message));
window.addEventListener("unhandledrejection", (e) => log("unhandled rejection:", e.reason));

function within(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)),
  ]);
}

function event(emitter, name) {
  return new Promise((resolve, reject) => {
    emitter.once(name, resolve);
    emitter.once("error", reject);
  });
}

// frame returns size bytes that depend on their index and the size.
function frame(size) {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + size) & 0xff;
  return b;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function main() {
  const cfg = await (await fetch("/test/config")).json();
  const Peer = (window.peerjs && window.peerjs.Peer) || window.Peer;
  const peer = new Peer(cfg.browserPeer, {
    host: cfg.host,
    port: cfg.port,
    path: "/",
    key: cfg.key,
    config: { iceServers: [] },
    debug: 1,
    logFunction: (...args) => log("peerjs:", ...args),
  });
  peer.on("error", (e) => log("peer error:", e.type, e.message));
  await within(event(peer, "open"), 10000, "registering with the PeerServer");
  log("registered as", peer.id);

  // Go nodes dialling us: echo.
  peer.on("connection", (conn) => {
    conn.on("open", () => log("connection from", conn.peer, "serialization", conn.serialization));
    conn.on("data", (d) => conn.send(d));
    conn.on("error", (e) => log("incoming connection error:", e.type, e.message));
  });

  for (const c of cfg.cases) {
    const what = `${c.serialization}${c.reliable ? "" : " (unordered)"}`;
    const conn = peer.connect(cfg.goPeer, { serialization: c.serialization, reliable: c.reliable });
    await within(event(conn, "open"), 10000, `opening a ${what} connection`);
    for (const size of c.sizes) {
      const want = frame(size);
      const got = within(new Promise((resolve) => conn.once("data", resolve)), 10000, `echo of ${size} bytes on ${what}`);
      conn.send(want);
      const back = new Uint8Array(await got);
      if (!equal(back, want)) throw new Error(`${what}: sent ${size} bytes, got back ${back.length} different ones`);
    }
    log(what, "echoed", c.sizes.join(", "), "bytes");
    conn.close();
  }
}

main().then(
  () => post("/test/result", "ok"),
  (e) => post("/test/result", "error: " + (e && e.stack ? e.stack : e)),
);
