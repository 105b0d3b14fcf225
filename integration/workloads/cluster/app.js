// The HTTP/1.1 server of the cluster workloads (node `cluster` and pm2's cluster mode). PORT from the
// environment. Routes: /users/<n> → 200, /missing/... → 404, /fail → 500, /pid → 200 with the pid of
// the process that answered, anything else → 200 "ok".
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/users/')) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: req.url.slice(7) }));
  } else if (req.url.startsWith('/missing')) {
    res.statusCode = 404;
    res.end('not found\n');
  } else if (req.url === '/fail') {
    res.statusCode = 500;
    res.end('failed\n');
  } else if (req.url === '/pid') {
    res.end(`${process.pid}\n`);
  } else {
    res.end('ok\n');
  }
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.env.PORT), '127.0.0.1');
