// A Node `ws` peer for wsfast's interop tests.
//   node peer.js client URL              -> sends text, binary, a 1 MiB message; prints the echoes' digests; closes 4001
//   node peer.js server [CERT.pem KEY.pem] -> an echo server on 127.0.0.1:0 (wss with a certificate); prints "PORT <n>";
//                                           exits after one connection
// For wss:// URLs the client trusts the CAs in NODE_EXTRA_CA_CERTS (set by the test), nothing else.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const https = require("https");
const WebSocket = require("ws");

const digest = (data) => crypto.createHash("sha256").update(data).digest("hex");
const [mode, url, keyFile] = process.argv.slice(2);
setTimeout(() => { console.error("timeout"); process.exit(2); }, 20000).unref();

if (mode === "client") {
  const ws = new WebSocket(url, ["chat"], { perMessageDeflate: true });
  const big = crypto.randomBytes(1 << 20);
  const expected = ["text:" + digest("héllo"), "binary:" + digest(Buffer.from([0, 1, 2, 255])), "binary:" + digest(big)];
  const got = [];
  ws.on("open", () => {
    console.log("PROTOCOL " + ws.protocol + " EXTENSIONS " + ws.extensions);
    ws.send("héllo");
    ws.send(Buffer.from([0, 1, 2, 255]));
    ws.send(big);
  });
  ws.on("message", (data, isBinary) => {
    got.push((isBinary ? "binary:" : "text:") + digest(isBinary ? data : data.toString()));
    if (got.length === expected.length) {
      console.log(JSON.stringify(got) === JSON.stringify(expected) ? "ECHO OK" : "ECHO MISMATCH " + JSON.stringify(got));
      ws.close(4001, "bye");
    }
  });
  ws.on("close", (code, reason) => { console.log("CLOSED " + code + " " + reason); process.exit(0); });
  ws.on("error", (err) => { console.error("ERROR " + err.message); process.exit(1); });
} else if (mode === "server") {
  const certFile = url;
  let wss;
  if (certFile) {
    const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) });
    wss = new WebSocket.Server({ server, perMessageDeflate: true });
    server.listen(0, "127.0.0.1", () => console.log("PORT " + server.address().port));
  } else {
    wss = new WebSocket.Server({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
    wss.on("listening", () => console.log("PORT " + wss.address().port));
  }
  wss.on("connection", (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("close", (code, reason) => { console.log("CLOSED " + code + " " + reason); wss.close(); process.exit(0); });
  });
} else {
  console.error("usage: node peer.js client URL | server [CERT.pem KEY.pem]");
  process.exit(2);
}
