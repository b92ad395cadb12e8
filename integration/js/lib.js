'use strict'
// Shared helpers for the test scripts.

const crypto = require('crypto')

// Every test payment uses the same preimage: 32 bytes of 0x42.
const FULFILLMENT = Buffer.alloc(32, 0x42)
const CONDITION = crypto.createHash('sha256').update(FULFILLMENT).digest()
// Sanity check against the value the Go tests hard-code.
if (CONDITION.toString('hex') !== '425ed4e4a36b30ea21b90e21c712c649e8214c29b7eaf68089d1039c6e55384c') {
  throw new Error('condition constant mismatch')
}

// ilp-plugin-http 1.6.1 has no "host" option: connect() does
//   this._httpServer = this._app.listen(this._port)
// and Koa's listen(...args) is http.createServer(cb).listen(...args).
// So whatever we pass as incoming.port goes straight to net.Server#listen,
// which also accepts an options object. Passing {port, host: '127.0.0.1'}
// binds the plugin's server to loopback only, without patching the plugin.
// (port 0 picks a free port; read it back with boundPort()).
function loopbackPort (port) {
  return { port: Number(port), host: '127.0.0.1' }
}

// Connect the plugin and wait until its http server is listening (listen() is
// async), checking that it really is bound to 127.0.0.1. Returns the port.
// connect() creates the server synchronously (it has no await before listen),
// so the 'error' listener is attached before a listen error (EADDRINUSE) fires.
// onServer(server), if given, runs right after the server exists.
async function connectLoopback (plugin, onServer) {
  const connecting = plugin.connect()
  const server = plugin._httpServer
  if (!server) throw new Error('plugin has no _httpServer after connect()')
  const listening = new Promise((resolve, reject) => {
    const done = () => {
      server.removeListener('error', reject)
      const addr = server.address()
      if (!addr || addr.address !== '127.0.0.1') {
        reject(new Error('plugin server not bound to 127.0.0.1: ' + JSON.stringify(addr)))
        return
      }
      resolve(addr.port)
    }
    if (server.listening) return done()
    server.once('listening', done)
    server.once('error', reject)
  })
  if (onServer) onServer(server)
  await connecting
  return listening
}

function parseArgs (argv, spec) {
  // spec: {name: {type: 'string'|'bool', default}}
  const out = {}
  for (const k of Object.keys(spec)) out[k] = spec[k].default
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error('unexpected argument: ' + a)
    let key = a.slice(2)
    let val
    const eq = key.indexOf('=')
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq) }
    if (!(key in spec)) throw new Error('unknown flag: --' + key)
    if (spec[key].type === 'bool') {
      out[key] = val === undefined ? true : val !== 'false'
    } else {
      if (val === undefined) {
        if (i + 1 >= argv.length) throw new Error('flag --' + key + ' needs a value')
        val = argv[++i]
      }
      out[key] = val
    }
  }
  return out
}

function println (line) {
  // stdout to a pipe is synchronous on Linux, so lines are not lost on exit.
  process.stdout.write(line + '\n')
}

// connectorAccount is an ilp-connector account in XRP at scale 9 whose
// plugin is ilp-plugin-http, with its incoming and outgoing options; extra
// adds settings such as a balance.
function connectorAccount (relation, incoming, outgoing, extra = {}) {
  return { relation, assetCode: 'XRP', assetScale: 9, plugin: 'ilp-plugin-http', ...extra, options: { incoming, outgoing } }
}

// adminAPI is the ilp-connector settings of an admin API on
// 127.0.0.1:<port>, or none without a port.
function adminAPI (port) {
  return port ? { adminApi: true, adminApiHost: '127.0.0.1', adminApiPort: Number(port) } : {}
}

module.exports = { FULFILLMENT, CONDITION, loopbackPort, connectLoopback, parseArgs, println, connectorAccount, adminAPI }
