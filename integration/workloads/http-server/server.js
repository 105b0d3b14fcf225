// An HTTP/1.1 server for capture tests. PORT from the environment. Routes:
//   /users/<n>  → 200 with a small JSON body      /missing/... → 404
//   /fail       → 500                              /chunked     → 200, chunked body in three writes
//   /slow/<ms>  → 200 after <ms> milliseconds      /empty       → 204
//   /cached     → 304                              /stream      → 200 in two writes, no length (chunked
//   anything else → 200 "ok"                                       for HTTP/1.1, close-delimited for 1.0)
// With PROM_CLIENT=1 every request is also observed by a prom-client histogram (the in-process
// instrumentation the benchmark compares vigil with; `npm install` in this directory first).
const http = require('http');
const port = Number(process.env.PORT);
const observe = process.env.PROM_CLIENT ? promClientMiddleware() : () => {};

function promClientMiddleware() {
  const client = require('prom-client');
  const duration = new client.Histogram({
    name: 'http_server_request_duration_seconds',
    help: 'request duration',
    labelNames: ['method', 'route', 'status'],
  });
  return (req, res) => {
    const end = duration.startTimer({ method: req.method });
    res.on('finish', () => end({ route: req.url, status: res.statusCode }));
  };
}

const server = http.createServer((req, res) => {
  observe(req, res);
  if (req.url.startsWith('/users/')) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: req.url.slice(7) }));
  } else if (req.url.startsWith('/missing')) {
    res.statusCode = 404;
    res.end('not found\n');
  } else if (req.url === '/fail') {
    res.statusCode = 500;
    res.end('failed\n');
  } else if (req.url === '/chunked') {
    res.write('one ');
    res.write('two ');
    res.end('three\n');
  } else if (req.url === '/empty') {
    res.statusCode = 204;
    res.end();
  } else if (req.url === '/cached') {
    res.statusCode = 304;
    res.end();
  } else if (req.url === '/stream') {
    res.write('first ');
    setTimeout(() => res.end('second\n'), 5);
  } else if (req.url.startsWith('/slow/')) {
    setTimeout(() => res.end('slow\n'), Number(req.url.slice(6)));
  } else {
    res.end('ok\n');
  }
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
