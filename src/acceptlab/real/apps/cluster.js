// Node's cluster module serving the kit's one-line app: every reply is "pid N".
// ACCEPTLAB_POLICY=rr: the primary accepts and hands connections out in turn (SCHED_RR, Node's
// default on Linux); =none: every worker accepts on the shared socket itself (SCHED_NONE).
// ACCEPTLAB_WORKERS, ACCEPTLAB_HOST, ACCEPTLAB_PORT say how many and where;
// Every reply waits the milliseconds written in the file ACCEPTLAB_SLOW_FILE (re-read at most
// every 50 ms, so a running server can be made slow and fast again).  The primary prints "ready" once every worker listens,
// and on SIGTERM stops its workers before it exits.  No Connection header: an HTTP/1.0 request
// (the kit's load) is closed after its reply, an HTTP/1.1 one (acceptlab.observe) kept open.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

const env = process.env;
cluster.schedulingPolicy = env.ACCEPTLAB_POLICY === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
const workers = Number(env.ACCEPTLAB_WORKERS || 2);
const fs = require('node:fs');
let slowMs = 0;
let slowReadAt = -Infinity;
const slowness = () => {
  const moment = Date.now();
  if (env.ACCEPTLAB_SLOW_FILE && moment - slowReadAt >= 50) {
    slowReadAt = moment;
    try {
      slowMs = Number(fs.readFileSync(env.ACCEPTLAB_SLOW_FILE, 'utf8')) || 0;
    } catch (error) {
      slowMs = 0;
    }
  }
  return slowMs;
};

if (cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) console.log('ready');
  });
  for (let i = 0; i < workers; i += 1) cluster.fork();
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const body = `pid ${process.pid}\n`;
  const reply = (res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    res.end(body);
  };
  http.createServer((req, res) => {
    const wait = slowness();
    if (wait > 0) setTimeout(reply, wait, res); else reply(res);
  }).listen(Number(env.ACCEPTLAB_PORT), env.ACCEPTLAB_HOST || '127.0.0.1');
}
