// A trivial HTTP server started with `npm start` (npm → sh -c → node). PORT from the environment;
// LISTEN_DELAY_MS delays listen() to model a service that opens its port late.
const http = require('http');
const port = Number(process.env.PORT);
const delay = Number(process.env.LISTEN_DELAY_MS || 0);
const server = http.createServer((req, res) => res.end('ok\n'));
setTimeout(() => server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`)), delay);
