// An HTTP/1.1 client for capture tests: waits a second (so that vigil publishes it), then sends
// REQUESTS GETs over one keep-alive connection to 127.0.0.1:PORT, cycling through /users/1, /missing/x
// and /fail, and prints the responses by status as `200=N 404=N 500=N`.
const http = require('http');
const port = Number(process.env.PORT);
const total = Number(process.env.REQUESTS);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const paths = ['/users/1', '/missing/x', '/fail'];
const tally = {};

function next(n) {
  if (n === total) {
    console.log(Object.entries(tally).map(([status, count]) => `${status}=${count}`).join(' '));
    agent.destroy();
    return;
  }
  http.get({ host: '127.0.0.1', port, path: paths[n % paths.length], agent }, (res) => {
    res.resume();
    res.on('end', () => {
      tally[res.statusCode] = (tally[res.statusCode] || 0) + 1;
      next(n + 1);
    });
  });
}

setTimeout(() => next(0), 1000);
