// An HTTPS (HTTP/1.1 over TLS, keep-alive) server for vigil's TLS capture tests: node's TLS is OpenSSL
// linked into the node binary, so this is the statically linked TLS case. Routes:
//   /ok → 200 "ok"    /missing → 404    /fail → 500    anything else → 200
// Usage: node https_server.js --port P --cert CERT.pem --key KEY.pem. Binds 127.0.0.1; prints
// "listening P" once serving.
const fs = require('fs');
const https = require('https');

const flag = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(flag('--port'));
const statuses = { '/ok': 200, '/missing': 404, '/fail': 500 };

const server = https.createServer({ cert: fs.readFileSync(flag('--cert')), key: fs.readFileSync(flag('--key')) }, (req, res) => {
  res.statusCode = statuses[req.url] ?? 200;
  res.end(res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`);
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
