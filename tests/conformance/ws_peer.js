// Node's `ws` as an Autobahn peer, for the comparison table (run.py --peer ws).
//   node ws_peer.js server [TIMEOUT_S]      -> echo server on 127.0.0.1:0; prints "READY <port> ws-<version>"
//   node ws_peer.js client URL [TIMEOUT_S]  -> drives kosoku's fuzzing server (getCaseCount, runCase, updateReports)
// Settings match wsfast's echo peers: no size limit worth the name (64 MiB), permessage-deflate
// negotiated with every message compressed (threshold 0), the client offering
// client_no_context_takeover and client_max_window_bits. `ws` is resolved through NODE_PATH
// (run.py points it at tests/interop/node_modules).
"use strict";
const WebSocket = require("ws");
const version = require("ws/package.json").version;

const [mode, arg1, arg2] = process.argv.slice(2);
const timeoutS = Number((mode === "client" ? arg2 : arg1) || 3600);
setTimeout(() => { console.error(`ws_peer: stopping after ${timeoutS} s`); process.exit(2); }, timeoutS * 1000).unref();
const maxPayload = 64 * 1024 * 1024;

if (mode === "server") {
  const wss = new WebSocket.Server({
    host: "127.0.0.1", port: 0, maxPayload,
    perMessageDeflate: { threshold: 0 },
  });
  wss.on("listening", () => console.log(`READY ${wss.address().port} ws-${version}`));
  wss.on("connection", (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("error", () => {});
  });
  process.on("SIGTERM", () => { wss.close(); process.exit(0); });
} else if (mode === "client") {
  const base = arg1.replace(/\/$/, "");
  const agent = `ws-${version}`;
  const options = { maxPayload, perMessageDeflate: { threshold: 0, clientNoContextTakeover: true, clientMaxWindowBits: true } };
  const open = (path, onMessage) => new Promise((resolve) => {
    const ws = new WebSocket(base + path, options);
    ws.on("message", (data, isBinary) => onMessage(ws, data, isBinary));
    ws.on("error", (err) => console.error(`ws_peer: ${path}: ${err.message}`));
    ws.on("close", () => resolve());
  });
  (async () => {
    let count = 0;
    await open("/getCaseCount", (ws, data) => { count = Number(data.toString()); });
    console.error(`ws_peer: ${count} cases`);
    for (let n = 1; n <= count; n++) {
      await open(`/runCase?case=${n}&agent=${encodeURIComponent(agent)}`,
        (ws, data, isBinary) => ws.send(data, { binary: isBinary }));
    }
    await open(`/updateReports?agent=${encodeURIComponent(agent)}`, (ws) => ws.close());
    process.exit(0);
  })();
} else {
  console.error("usage: node ws_peer.js server [TIMEOUT_S] | client URL [TIMEOUT_S]");
  process.exit(2);
}
