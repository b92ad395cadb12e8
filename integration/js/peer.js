'use strict'
// A real ilp-connector 23.0.1 peered with the fleet behind the edge, with
// a receiver behind it: the peer whose routes the fleet must learn.
//
//   node peer.js --port 7401 --token FLEET_TOKEN --edge-url http://127.0.0.1:9080/
//                --edge-token PEER_TOKEN --recv-port 7501 --recv-token T [--admin-port 7602]
//                [--fresh-connections]
//
// Its address is test.peer. The account "fleet" (relation peer, so that
// routes are exchanged over CCP, every second) is an ilp-plugin-http
// server on 127.0.0.1:<port>, which the fleet's instances send to
// directly, and a client of the edge, where the peer's route updates and
// packets go. The account "recv" (child) is a client of backend.js at
// <recv-port>, the static route for test.peer.recv, which the peer
// advertises. With --admin-port, ilp-connector's admin API listens on
// 127.0.0.1:<admin-port>: POST /addAccount of the account "late" gives
// the peer a route to test.late, which it then advertises, and of the
// account "spread" one to test.spread, for a test to change the peer's
// table once more.
//
// With --fresh-connections, every HTTP request the peer sends goes on a
// connection of its own, closed after the answer. Node 20's default
// agent keeps connections alive, and ilp-plugin-http (node-fetch, with
// no agent of its own) uses it: all of the peer's packets would ride one
// connection, to one edge, where an L4 balancer (round-robin) in front
// of several edges is to spread them, route updates included, over all.
//
// stdout: READY <port>, once every account is connected.

const { createApp } = require('ilp-connector')
const { loopbackPort, parseArgs, println, connectorAccount, adminAPI } = require('./lib')

function fail (msg) {
  process.stderr.write('peer: ' + msg + '\n')
  process.exit(2)
}

let args
try {
  args = parseArgs(process.argv.slice(2), {
    port: { type: 'string' },
    token: { type: 'string' },
    'edge-url': { type: 'string' },
    'edge-token': { type: 'string' },
    'recv-port': { type: 'string' },
    'recv-token': { type: 'string' },
    'admin-port': { type: 'string' },
    'fresh-connections': { type: 'bool' }
  })
} catch (e) {
  fail(e.message)
}
for (const k of ['port', 'recv-port']) if (!/^\d+$/.test(args[k] || '')) fail(`--${k} <n> is required`)
for (const k of ['token', 'edge-url', 'edge-token', 'recv-token']) if (!args[k]) fail(`--${k} is required`)

if (args['fresh-connections']) {
  // node-fetch v2 passes no agent to http.request, which then takes
  // http.globalAgent at each request: one without keep-alive closes each
  // connection after its answer.
  const http = require('http')
  http.globalAgent = new http.Agent({ keepAlive: false })
}

const app = createApp({
  ilpAddress: 'test.peer',
  backend: 'one-to-one',
  spread: 0,
  store: 'memory',
  routeBroadcastEnabled: true,
  routeBroadcastInterval: 1000,
  ...adminAPI(args['admin-port']),
  accounts: {
    fleet: connectorAccount('peer', { port: loopbackPort(args.port), staticToken: args.token },
      { url: args['edge-url'], staticToken: args['edge-token'] }),
    recv: connectorAccount('child', { port: loopbackPort(0), staticToken: 'unused' },
      { url: `http://127.0.0.1:${args['recv-port']}/`, staticToken: args['recv-token'] })
  },
  // test.late is routed to the account "late", which does not exist
  // until a test adds it (POST /addAccount): the peer's table gains
  // test.late then, as a peer's table changes in operation. test.spread
  // and the account "spread" likewise. (A child account's own address,
  // under test.peer, would change nothing: test.peer covers it.)
  routes: [
    { targetPrefix: 'test.peer.recv', peerId: 'recv' },
    { targetPrefix: 'test.late', peerId: 'late' },
    { targetPrefix: 'test.spread', peerId: 'spread' }
  ]
})

app.listen().then(() => println('READY ' + args.port)).catch(e => fail(e.stack || String(e)))
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
