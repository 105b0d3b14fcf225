// A gRPC client over h2c for vigil's gRPC capture tests, driving server.js or ../python/grpc_server.py.
//   node client.js --port P --plan PLAN
//     PLAN is a comma list of method:arg:times, e.g. Unary:ok:10,ServerStream:5:4,Bidi:3:2. The arg is
//     Unary's payload (ok/not_found/internal), ServerStream's message count, the number of messages
//     Bidi/ClientStream send, and ignored by FailMidway. All calls go one after another on ONE channel.
//   node client.js --port P --loop [--stop-file F]
//     Unary "ok" calls, one at a time about 5 ms apart on one channel, until SIGTERM or file F exists;
//     prints "started" once the first call succeeded, so a test knows the connection is open and busy.
// Either way it ends by printing one JSON line counting calls by method and the status the client saw,
// e.g. {"Unary/OK":10,"Unary/NOT_FOUND":3}. An OK call (or a FailMidway call) whose replies were not what
// the server should have sent (a short stream, a wrong echo) counts as "<method>/MISMATCH", so a test notices.
const fs = require('fs');
const grpc = require('@grpc/grpc-js');

const flag = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(flag('--port'));
const identity = (bytes) => bytes;
const path = (method) => `/vigil.test.Echo/${method}`;
const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const counts = {};

// Settles with the status name and the replies received, whatever the outcome.
function unary(method, payload) {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path(method), identity, identity, Buffer.from(payload), (error, reply) =>
      resolve({ code: error ? error.code : grpc.status.OK, replies: error ? [] : [reply.toString()] }));
  });
}

function readReplies(call, resolve) {
  const replies = [];
  call.on('data', (message) => replies.push(message.toString()));
  call.on('error', () => {}); // the status event below carries the outcome
  call.on('status', (status) => resolve({ code: status.code, replies }));
  return replies;
}

function serverStream(method, payload) {
  return new Promise((resolve) => {
    readReplies(client.makeServerStreamRequest(path(method), identity, identity, Buffer.from(payload)), resolve);
  });
}

// Ping-pong: each message is sent after the previous echo came back, so frames really interleave.
function bidi(count) {
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest(path('Bidi'), identity, identity);
    const replies = readReplies(call, resolve);
    const next = () => (replies.length < count ? call.write(Buffer.from(`message ${replies.length}`)) : call.end());
    call.on('data', next);
    next();
  });
}

function clientStream(count) {
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(path('ClientStream'), identity, identity, (error, reply) =>
      resolve({ code: error ? error.code : grpc.status.OK, replies: error ? [] : [reply.toString()] }));
    for (let i = 0; i < count; i++) call.write(Buffer.from(`message ${i}`));
    call.end();
  });
}

// What an OK call must have received, by method.
const expected = {
  Unary: (arg) => [arg],
  ServerStream: (arg) => Array.from({ length: Number(arg) }, (_, i) => `message ${i}`),
  Bidi: (arg) => Array.from({ length: Number(arg) }, (_, i) => `message ${i}`),
  ClientStream: (arg) => [String(arg)],
  FailMidway: () => ['message 0', 'message 1'],
};

async function call(method, arg) {
  const run = {
    Unary: () => unary('Unary', arg),
    ServerStream: () => serverStream('ServerStream', arg),
    FailMidway: () => serverStream('FailMidway', arg),
    Bidi: () => bidi(Number(arg)),
    ClientStream: () => clientStream(Number(arg)),
  }[method];
  if (!run) throw new Error(`unknown method ${method}`);
  const { code, replies } = await run();
  const checked = code === grpc.status.OK || method === 'FailMidway';
  const wrong = checked && JSON.stringify(replies) !== JSON.stringify(expected[method](arg));
  const key = `${method}/${wrong ? 'MISMATCH' : grpc.status[code]}`;
  counts[key] = (counts[key] || 0) + 1;
}

async function runPlan(plan) {
  for (const step of plan.split(',')) {
    const [method, arg, times] = step.split(':');
    for (let i = 0; i < Number(times); i++) await call(method, arg);
  }
}

async function runLoop(stopFile) {
  let stopping = false;
  process.on('SIGTERM', () => { stopping = true; });
  const stopped = () => stopping || (stopFile && fs.existsSync(stopFile));
  let started = false;
  while (!stopped()) {
    await call('Unary', 'ok');
    if (!started && counts['Unary/OK']) {
      started = true;
      console.log('started');
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

(process.argv.includes('--loop') ? runLoop(process.argv.includes('--stop-file') && flag('--stop-file')) : runPlan(flag('--plan')))
  .then(() => {
    console.log(JSON.stringify(counts));
    client.close();
  });
