'use strict'
// A real ilp-connector 23.0.1 instance, one of a fleet behind the edge.
//
//   node connector.js --port 7101 --token EDGE_TOKEN --up-port 7201 --up-token UP_TOKEN [--up-url URL]
//                     [--balance-max 2000] [--route-prefix g.recv]
//                     [--peer-port 7301 --peer-url http://127.0.0.1:7401/ --peer-token T]
//                     [--admin-port 7601]
//
// The account "edge" is an ilp-plugin-http server on 127.0.0.1:<port>
// (what caddy-ilp forwards into), with ilp-connector's balance middleware
// when --balance-max is given: an incoming Prepare that would take the
// account's balance above it gets T04 "exceeded maximum balance", as a
// peer's credit limit does. The account "up" is an ilp-plugin-http client
// to 127.0.0.1:<up-port> (backend.js), or to --up-url (the edge's
// ilp_egress, say), the static route for --route-prefix. With --peer-port, the account "peer" (relation peer)
// is one more ilp-plugin-http server on 127.0.0.1:<peer-port>, for what
// the edge forwards from a peer connector (peer.js), whose own server at
// --peer-url the instance sends to directly: ilp-connector exchanges
// routes with it over CCP, every second. With --admin-port, its admin API
// listens on 127.0.0.1:<admin-port> (GET /routing shows the routes it
// learnt).
//
// stdout: READY <port>, once every account is connected.

const { createApp } = require('ilp-connector')
const { loopbackPort, parseArgs, println, connectorAccount, adminAPI } = require('./lib')

function fail (msg) {
  process.stderr.write('connector: ' + msg + '\n')
  process.exit(2)
}

let args
try {
  args = parseArgs(process.argv.slice(2), {
    port: { type: 'string' },
    token: { type: 'string' },
    'up-port': { type: 'string' },
    'up-token': { type: 'string' },
    'up-url': { type: 'string' },
    'balance-max': { type: 'string' },
    'route-prefix': { type: 'string', default: 'g.recv' },
    'peer-port': { type: 'string' },
    'peer-url': { type: 'string' },
    'peer-token': { type: 'string' },
    'admin-port': { type: 'string' }
  })
} catch (e) {
  fail(e.message)
}
for (const k of ['port', 'up-port']) if (!/^\d+$/.test(args[k] || '')) fail(`--${k} <n> is required`)
if (!args.token || !args['up-token']) fail('--token and --up-token are required')

// ilp-plugin-http hands incoming.port to server.listen: loopbackPort's
// object binds to loopback only.
const account = (incoming, outgoing, balance, relation = 'child') =>
  connectorAccount(relation, incoming, outgoing, balance ? { balance: { maximum: balance } } : {})

const app = createApp({
  ilpAddress: 'test.fleet',
  backend: 'one-to-one',
  spread: 0,
  store: 'memory',
  routeBroadcastEnabled: true, // with false, ilp-connector 23 never loads the configured routes
  routeBroadcastInterval: 1000,
  ...adminAPI(args['admin-port']),
  accounts: {
    ...(args['peer-port']
      ? {
          peer: account({ port: loopbackPort(args['peer-port']), staticToken: args['peer-token'] },
            { url: args['peer-url'], staticToken: args['peer-token'] }, undefined, 'peer')
        }
      : {}),
    edge: account({ port: loopbackPort(args.port), staticToken: args.token },
      { url: 'http://127.0.0.1:9/', staticToken: 'unused' }, args['balance-max']),
    up: account({ port: loopbackPort(0), staticToken: 'unused' },
      { url: args['up-url'] || `http://127.0.0.1:${args['up-port']}/`, staticToken: args['up-token'] })
  },
  routes: [{ targetPrefix: args['route-prefix'], peerId: 'up' }]
})

app.listen().then(() => println('READY ' + args.port)).catch(e => fail(e.stack || String(e)))
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
