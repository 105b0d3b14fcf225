// A node `cluster` server, the usual way to use several cores: the primary forks WORKERS workers
// (default round-robin scheduling: the primary accepts every connection and hands it to a worker,
// which never listens itself) and forks a new worker whenever one dies. PORT from the environment.
// Prints `ready <pid> <pid> …` (the workers' pids) once every worker listens, and
// `respawned <pid>` for each replacement. Workers serve app.js.
const cluster = require('node:cluster');

if (cluster.isPrimary) {
  const wanted = Number(process.env.WORKERS || 2);
  const listening = new Set();
  let ready = false;
  cluster.on('listening', (worker) => {
    listening.add(worker.process.pid);
    if (ready) {
      console.log(`respawned ${worker.process.pid}`);
    } else if (listening.size === wanted) {
      ready = true;
      console.log(`ready ${[...listening].join(' ')}`);
    }
  });
  cluster.on('exit', (worker) => {
    listening.delete(worker.process.pid);
    cluster.fork();
  });
  for (let i = 0; i < wanted; i++) cluster.fork();
} else {
  require('./app.js');
}
