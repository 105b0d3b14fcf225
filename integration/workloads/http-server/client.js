// An HTTP/1.1 client for capture tests: waits a second (so that vigil publishes it), then sends
// REQUESTS GETs over one keep-alive connection to 127.0.0.1:PORT, cycling through /users/1, /missing/x
// and /fail, and prints the responses by status as `200=N 404=N 500=N`, then on a second line the
// response body bytes received by status, in the same form.
const http = require('http');
const port = Number(process.env.PORT);
const total = Number(process.env.REQUESTS);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const paths = ['/users/1', '/missing/x', '/fail'];
const tally = {};
const bodyBytes = {};

function next(n) {
  if (n === total) {
    const line = (byStatus) => Object.entries(byStatus).map(([status, n]) => `${status}=${n}`).join(' ');
    console.log(line(tally));
    console.log(line(bodyBytes));
    agent.destroy();
    return;
  }
  http.get({ host: '127.0.0.1', port, path: paths[n % paths.length], agent }, (res) => {
    res.on('data', (chunk) => {
      bodyBytes[res.statusCode] = (bodyBytes[res.statusCode] || 0) + chunk.length;
    });
    res.on('end', () => {
      tally[res.statusCode] = (tally[res.statusCode] || 0) + 1;
      next(n + 1);
    });
  });
}

setTimeout(() => next(0), 1000);
