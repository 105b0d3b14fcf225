// An HTTP/2 server over TLS (node's http2.createSecureServer, ALPN h2, OpenSSL linked into node) for
// vigil's HTTP/2-over-TLS test: any path → 200 "ok\n", except /missing → 404.
// Usage: node h2_server.js --port P --cert C --key K. Binds 127.0.0.1; prints "listening P" once serving.
const fs = require('fs');
const http2 = require('http2');

const flag = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(flag('--port'));
const server = http2.createSecureServer({ cert: fs.readFileSync(flag('--cert')), key: fs.readFileSync(flag('--key')) });
server.on('stream', (stream, headers) => {
  const missing = headers[':path'] === '/missing';
  stream.respond({ ':status': missing ? 404 : 200, 'content-type': 'text/plain' });
  stream.end(missing ? 'not found\n' : 'ok\n');
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
