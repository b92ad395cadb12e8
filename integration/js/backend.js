'use strict'
// Connector stand-in: a real ilp-plugin-http 1.6.1 server on 127.0.0.1.
//
//   node backend.js --port 7001 --name b1 --token SECRET
//                   [--jwt-secret S] [--stall-prefix g.stall] [--log-headers]
//
// stdout protocol (one line each):
//   READY <port>                          once listening (port 0 = pick a free port)
//   HDRS <json>                           every HTTP request, only with --log-headers
//   RECV <destination> <amount> <peer>    every Prepare reaching the data handler
//   BAD <message>                         body that is not an ILP Prepare (answered F01)
// Answers: Fulfill (fulfillment 0x42*32, data = ASCII name) if the condition is
// sha256(0x42*32); F05 Reject (triggeredBy test.backend.<name>) otherwise;
// no answer for 60 s if the destination starts with --stall-prefix.

const { AsyncLocalStorage } = require('async_hooks')
const IlpPacket = require('ilp-packet')
const PluginHttp = require('ilp-plugin-http').default
const { FULFILLMENT, CONDITION, loopbackPort, connectLoopback, parseArgs, println } = require('./lib')

const MAX_LIFETIME_MS = 10 * 60 * 1000
const STALL_MS = 60 * 1000

function fail (msg) {
  process.stderr.write('backend: ' + msg + '\n')
  process.exit(2)
}

let args
try {
  args = parseArgs(process.argv.slice(2), {
    port: { type: 'string' },
    name: { type: 'string', default: 'backend' },
    token: { type: 'string' },
    'jwt-secret': { type: 'string' },
    'stall-prefix': { type: 'string' },
    'log-headers': { type: 'bool', default: false }
  })
} catch (e) {
  fail(e.message)
}
if (args.port === undefined || !/^\d+$/.test(args.port)) fail('--port <n> is required')
if (!args.token && !args['jwt-secret']) fail('--token or --jwt-secret is required')

const triggeredBy = 'test.backend.' + args.name
// The ILP-Peer-Name header is not passed to the data handler by the plugin.
// We wrap the http server's 'request' listener so each request runs inside an
// AsyncLocalStorage context holding its headers; the data handler reads it.
const als = new AsyncLocalStorage()

const incoming = { port: loopbackPort(args.port) }
// With a JWT secret the plugin uses JWT auth; a static token given as well is
// accepted as an alternative (plugin behaviour, lib/auth.js).
if (args['jwt-secret']) incoming.jwtSecret = args['jwt-secret']
if (args.token) incoming.staticToken = args.token

const plugin = new PluginHttp({
  incoming,
  // Required by the constructor, never used (we never call sendData).
  outgoing: { url: 'http://127.0.0.1:9/unused', staticToken: 'unused', name: args.name },
  ildcp: { clientAddress: 'test.backend.' + args.name, assetScale: 9, assetCode: 'XRP' }
})

function reject (code, message) {
  return IlpPacket.serializeIlpReject({ code, triggeredBy, message, data: Buffer.alloc(0) })
}

plugin.registerDataHandler(async (data) => {
  const store = als.getStore()
  const rawName = store && store.headers['ilp-peer-name']
  const peer = rawName ? String(rawName).replace(/\s/g, '_') : '-'
  let prepare
  try {
    prepare = IlpPacket.deserializeIlpPrepare(data)
  } catch (e) {
    println('BAD ' + String(e.message).replace(/\n/g, ' '))
    return reject('F01', 'invalid packet: ' + e.message)
  }
  println(`RECV ${prepare.destination} ${prepare.amount} ${peer}`)
  if (args['stall-prefix'] && prepare.destination.startsWith(args['stall-prefix'])) {
    await new Promise((resolve) => setTimeout(resolve, STALL_MS).unref())
    return reject('R00', 'stalled')
  }
  if (!prepare.executionCondition.equals(CONDITION)) {
    return reject('F05', 'condition mismatch')
  }
  return IlpPacket.serializeIlpFulfill({ fulfillment: FULFILLMENT, data: Buffer.from(args.name, 'utf8') })
})

async function main () {
  const port = await connectLoopback(plugin, (server) => {
    // Swap the Koa request listener for one that runs it inside als.run().
    const listeners = server.listeners('request')
    server.removeAllListeners('request')
    for (const l of listeners) {
      server.on('request', (req, res) => {
        if (args['log-headers']) {
          println('HDRS ' + JSON.stringify({ method: req.method, url: req.url, httpVersion: req.httpVersion, headers: req.headers }))
        }
        als.run({ headers: req.headers }, () => l(req, res))
      })
    }
  })
  println('READY ' + port)
}

function shutdown (sig) {
  process.stderr.write(`backend ${args.name}: ${sig}, exiting\n`)
  try { plugin.disconnect() } catch (e) {}
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
setTimeout(() => shutdown('max lifetime reached'), MAX_LIFETIME_MS).unref()

main().catch((e) => fail(e.stack || e.message))
