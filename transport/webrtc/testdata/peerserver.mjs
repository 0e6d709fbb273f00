// Runs the npm PeerServer (package "peer") on 127.0.0.1 for
// TestNpmPeerServer: the port is chosen by the system and printed as the
// first line of stdout, as JSON: {"port": 12345}. The server stops when
// stdin closes (the Go test closes it, or dies).
import { PeerServer } from "peer";

const server = PeerServer(
  {
    host: "127.0.0.1",
    port: 0,
    path: "/",
    key: "peerjs",
    expire_timeout: 1000,
  },
  (srv) => {
    process.stdout.write(JSON.stringify({ port: srv.address().port }) + "\n");
  },
);
server.on("error", (err) => process.stderr.write(`peer server: ${err}\n`));
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
