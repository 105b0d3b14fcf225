// A gRPC server over h2c (no TLS) for vigil's gRPC capture tests, without protoc: messages are raw
// bytes, so the service is described by hand with identity (de)serializers. Service vigil.test.Echo:
//   Unary         request "ok" → OK with the payload echoed; "not_found" → NOT_FOUND; "internal" → INTERNAL
//   ServerStream  request is an ASCII integer N → N messages, then OK
//   Bidi          echoes each message; OK when the client ends its side
//   ClientStream  counts the client's messages; replies once with the count (ASCII), OK
//   FailMidway    two messages, then ABORTED (a status that none of the other methods returns)
// Usage: node server.js --port P. Binds 127.0.0.1; prints "listening P" once serving.
const grpc = require('@grpc/grpc-js');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
const identity = (bytes) => bytes;

function method(name, requestStream, responseStream) {
  return {
    path: `/vigil.test.Echo/${name}`, requestStream, responseStream,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  };
}

const service = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  Bidi: method('Bidi', true, true),
  ClientStream: method('ClientStream', true, false),
  FailMidway: method('FailMidway', false, true),
};

const unaryOutcomes = {
  not_found: grpc.status.NOT_FOUND,
  internal: grpc.status.INTERNAL,
};

const handlers = {
  Unary(call, callback) {
    const payload = call.request.toString();
    if (payload === 'ok') return callback(null, call.request);
    const code = unaryOutcomes[payload] ?? grpc.status.INVALID_ARGUMENT;
    callback({ code, details: `asked for ${payload}` });
  },
  ServerStream(call) {
    const count = Number(call.request.toString());
    for (let i = 0; i < count; i++) call.write(Buffer.from(`message ${i}`));
    call.end();
  },
  Bidi(call) {
    call.on('data', (message) => call.write(message));
    call.on('end', () => call.end());
  },
  ClientStream(call, callback) {
    let count = 0;
    call.on('data', () => count++);
    call.on('end', () => callback(null, Buffer.from(String(count))));
  },
  FailMidway(call) {
    call.write(Buffer.from('message 0'));
    call.write(Buffer.from('message 1'));
    // grpc-js turns an 'error' event on a server stream into the call's final status.
    call.emit('error', { code: grpc.status.ABORTED, details: 'failed midway' });
  },
};

const server = new grpc.Server();
server.addService(service, handlers);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  if (error) throw error;
  console.log(`listening ${bound}`);
});
