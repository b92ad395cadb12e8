'use strict'
// A real STREAM payment (ilp-protocol-stream 2.7.1) over ilp-plugin-http
// 1.6.1, for the edge's limits tests.
//
//   node stream.js receive --port 0 --token T [--address test.receiver] [--addresses 1]
//     a STREAM server at --address behind an ilp-plugin-http server (the
//     "connector"); prints ADDRESS <destination> <shared secret, base64>
//     for each of --addresses receiving addresses after the first, then
//     READY <port> <destination> <shared secret> for the first, then
//     RECEIVED <total so far> at every payment it receives, all
//     addresses together
//   node stream.js send --url U --token T --destination D --secret S --amount N
//                       [--max-packet M] [--retry-errors]
//                       [--async-callback-port P --async-callback-token C]
//     pays N to D through U; prints PAID <sent> <delivered> or FAILED <reason>.
//     With --max-packet, no packet carries more than M (STREAM's
//     maximumPacketAmount), so that a payment takes many packets. With
//     --retry-errors, a packet whose HTTP request fails (the connection
//     refused or reset: the edge behind U died) counts as a T01 Reject,
//     which STREAM retries, instead of ending the connection, as
//     ilp-plugin-http's thrown error does; each prints
//     RETRY <amount> <error> first. With --async-callback-port, the sender
//     speaks RFC 35 draft 3 (asyncplugin.js): each Prepare gets 202 and its
//     reply comes to a callback server on 127.0.0.1:P, which takes the
//     edge's Bearer C; it prints ASYNC <sent> <accepted> <replies>
//     <duplicates> <refused> before PAID.
//
// Neither side has a parent connector to ask its ILP address (ILDCP), so
// each plugin answers peer.config itself. Runs at most 60 s.

const ILDCP = require('ilp-protocol-ildcp')
const IlpPacket = require('ilp-packet')
const PluginHttp = require('ilp-plugin-http').default
const { loopbackPort, connectLoopback, parseArgs, println } = require('./lib')
const { AsyncPlugin } = require('./asyncplugin')

const hard = setTimeout(() => { println('FAILED hard time limit of 60 s'); process.exit(3) }, 60 * 1000)
hard.unref()

// ilp-protocol-stream 2.7.1 assigns `this.closed` in its Duplex subclass,
// which Node >= 18 defines as a getter only, so createStream() throws
// (interledgerjs/interledgerjs#284: fixed upstream, never published).
// Rename the field in its source before the module is first loaded.
function loadStream () {
  const fs = require('fs')
  const Module = require('module')
  const file = require.resolve('ilp-protocol-stream/dist/src/stream.js')
  const m = new Module(file, module)
  m.filename = file
  m.paths = Module._nodeModulePaths(require('path').dirname(file))
  m._compile(fs.readFileSync(file, 'utf8').replace(/this\.closed\b/g, 'this._streamClosed'), file)
  m.loaded = true
  require.cache[file] = m
  return require('ilp-protocol-stream')
}
const STREAM = loadStream()

// withAddress makes plugin answer ILDCP (peer.config) with address. With
// oneWay, every other packet it would send gets F02 instead: the receiver
// has no route back to the sender (its STREAM packets are only updates,
// which it can do without).
function withAddress (plugin, address, oneWay) {
  const sendData = plugin.sendData.bind(plugin)
  plugin.sendData = async (data) => {
    if (data[0] === 12 && data.includes(Buffer.from('peer.config'))) {
      return ILDCP.serializeIldcpResponse({ clientAddress: address, assetScale: 9, assetCode: 'XRP' })
    }
    if (oneWay) {
      return IlpPacket.serializeIlpReject({ code: 'F02', triggeredBy: address, message: 'no route back', data: Buffer.alloc(0) })
    }
    return sendData(data)
  }
  return plugin
}

async function receive (args) {
  const plugin = withAddress(new PluginHttp({
    incoming: { port: loopbackPort(args.port), staticToken: args.token },
    outgoing: { url: 'http://127.0.0.1:9/unused', staticToken: 'unused' }
  }), args.address, true)
  const port = await connectLoopback(plugin)
  const server = await STREAM.createServer({ plugin, serverSecret: Buffer.alloc(32, 7) })
  const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
  for (let i = 1; i < Number(args.addresses); i++) {
    const more = server.generateAddressAndSecret()
    println(`ADDRESS ${more.destinationAccount} ${more.sharedSecret.toString('base64')}`)
  }
  // Without a route back, the receiver's own STREAM packets fail and it
  // may close a connection, which the sender reopens: count across them,
  // and say the total at every payment (a closing connection's last
  // packets may never come).
  let total = 0n
  server.on('connection', (conn) => {
    conn.on('stream', (stream) => {
      stream.setReceiveMax('18446744073709551615')
      stream.on('money', (amount) => {
        total += BigInt(amount)
        println('RECEIVED ' + total)
      })
    })
  })
  println(`READY ${port} ${destinationAccount} ${sharedSecret.toString('base64')}`)
}

async function send (args) {
  const plugin = withAddress(args['async-callback-port']
    ? new AsyncPlugin({ url: args.url, token: args.token, callbackPort: args['async-callback-port'], callbackToken: args['async-callback-token'] })
    : new PluginHttp({
      incoming: { port: loopbackPort(0), staticToken: 'unused' },
      outgoing: { url: args.url, staticToken: args.token, sendIlpDestination: true }
    }), 'test.sender')
  if (args['retry-errors']) {
    const sendData = plugin.sendData.bind(plugin)
    plugin.sendData = async (data) => {
      try {
        return await sendData(data)
      } catch (e) {
        const message = String(e.message).replace(/\n/g, ' ')
        println(`RETRY ${IlpPacket.deserializeIlpPrepare(data).amount} ${message}`)
        return IlpPacket.serializeIlpReject({ code: 'T01', triggeredBy: 'test.sender', message, data: Buffer.alloc(0) })
      }
    }
  }
  if (plugin instanceof AsyncPlugin) await plugin.connect()
  else await connectLoopback(plugin)
  const conn = await STREAM.createConnection({
    plugin,
    destinationAccount: args.destination,
    sharedSecret: Buffer.from(args.secret, 'base64'),
    slippage: 0,
    maximumPacketAmount: args['max-packet']
  })
  const stream = conn.createStream()
  try {
    await stream.sendTotal(args.amount, { timeout: 45000 })
    if (plugin.stats) {
      const s = plugin.stats
      println(`ASYNC ${s.sent} ${s.accepted} ${s.replies} ${s.duplicates} ${s.refused}`)
    }
    println(`PAID ${stream.totalSent} ${conn.totalDelivered}`)
  } catch (e) {
    println(`FAILED ${String(e.message).replace(/\n/g, ' ')} (sent ${stream.totalSent})`)
  }
  await conn.end().catch(() => {})
  await plugin.disconnect()
  process.exit(0)
}

const [role, ...rest] = process.argv.slice(2)
const spec = {
  port: { type: 'string', default: '0' }, token: { type: 'string' }, url: { type: 'string' },
  destination: { type: 'string' }, secret: { type: 'string' }, amount: { type: 'string' },
  address: { type: 'string', default: 'test.receiver' }, addresses: { type: 'string', default: '1' },
  'max-packet': { type: 'string' }, 'retry-errors': { type: 'bool' },
  'async-callback-port': { type: 'string' }, 'async-callback-token': { type: 'string' }
}
const main = { receive, send }[role]
if (!main) { println('FAILED usage: node stream.js receive|send …'); process.exit(2) }
main(parseArgs(rest, spec)).catch((e) => { println('FAILED ' + String(e.stack).replace(/\n/g, ' ')); process.exit(1) })
