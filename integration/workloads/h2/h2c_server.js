// A plain HTTP/2 server over cleartext (h2c, prior knowledge, no TLS) for vigil's HTTP/2 capture tests,
// loaded with h2load. Any path → 200 "ok\n", except /missing → 404.
// Usage: node h2c_server.js --port P. Binds 127.0.0.1; prints "listening P" once serving.
const http2 = require('http2');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
const server = http2.createServer((req, res) => {
  res.statusCode = req.url === '/missing' ? 404 : 200;
  res.end(req.url === '/missing' ? 'not found\n' : 'ok\n');
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
