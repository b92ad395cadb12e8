'use strict'
// A real peer: ilp-plugin-http 1.6.1 client sending Prepares.
//
//   node client.js < plan.json
//
// plan: {
//   "url": "http://127.0.0.1:9080/ilp",
//   "auth": {"staticToken": "t"} | {"jwtSecret": "s", "jwtExpiry": 30000} | {"secretToken": "legacy"} | {"secret": "legacy-jwt"},
//   "name": "alice",              // ILP-Peer-Name; absent/"" = plugin default (its incoming port)
//   "http2": false, "http2MaxRequestsPerSession": null,
//   "sendIlpDestination": true,
//   "multi": false, "ildcp": {...},   // optional, for multi-mode URL templating
//   "concurrency": 8,
//   "timeoutGraceMs": 5000,       // no answer by expiresAt + grace = result "error", error "timeout"
//   "packets": [{"destination": "g.a.b.c", "amount": "10", "expiresInMs": 30000,
//                "data": "<hex, optional>", "condition": "<hex, optional override>"}]
// }
//
// stdout: one JSON line per packet (in completion order), then a {"done":true,...} line.
// Exit 0 whatever the packets' results; non-zero only when the harness itself fails.

const crypto = require('crypto')
const IlpPacket = require('ilp-packet')
const PluginHttp = require('ilp-plugin-http').default
const { FULFILLMENT, CONDITION, loopbackPort, connectLoopback, println } = require('./lib')

const HARD_LIMIT_MS = 120 * 1000
const AUTH_KEYS = ['staticToken', 'jwtSecret', 'jwtExpiry', 'secretToken', 'secret', 'tokenExpiry']

function fail (msg, code) {
  process.stderr.write('client: ' + msg + '\n')
  process.exit(code || 2)
}

const hardTimer = setTimeout(() => fail('hard time limit of 120 s reached', 3), HARD_LIMIT_MS)
hardTimer.unref()

function readStdin () {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', (c) => chunks.push(c))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

function hexOrEmpty (s, what) {
  if (s === undefined || s === null || s === '') return Buffer.alloc(0)
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(s)) throw new Error(what + ' must be a hex string')
  return Buffer.from(s, 'hex')
}

function validatePlan (plan) {
  if (!plan || typeof plan !== 'object') throw new Error('plan must be a JSON object')
  if (typeof plan.url !== 'string') throw new Error('plan.url is required')
  if (!plan.auth || typeof plan.auth !== 'object') throw new Error('plan.auth is required')
  if (!Array.isArray(plan.packets)) throw new Error('plan.packets must be an array')
  plan.packets.forEach((p, i) => {
    if (!p || typeof p.destination !== 'string') throw new Error(`packets[${i}].destination is required`)
    hexOrEmpty(p.data, `packets[${i}].data`)
    if (p.condition !== undefined && hexOrEmpty(p.condition, `packets[${i}].condition`).length !== 32) {
      throw new Error(`packets[${i}].condition must be 32 bytes of hex`)
    }
  })
}

function round (ms) { return Math.round(ms * 10) / 10 }

async function sendOne (plugin, plan, p, i) {
  const graceMs = plan.timeoutGraceMs === undefined ? 5000 : Number(plan.timeoutGraceMs)
  const expiresInMs = p.expiresInMs === undefined ? 30000 : Number(p.expiresInMs)
  const condition = p.condition ? Buffer.from(p.condition, 'hex') : CONDITION
  const out = {
    i,
    destination: p.destination,
    result: null,
    code: null,
    triggeredBy: null,
    message: null,
    data: null, // reply packet's data, hex
    error: null,
    ms: null
  }
  let prepare
  try {
    prepare = IlpPacket.serializeIlpPrepare({
      amount: String(p.amount === undefined ? '0' : p.amount),
      executionCondition: condition,
      expiresAt: new Date(Date.now() + expiresInMs),
      destination: p.destination,
      data: hexOrEmpty(p.data, 'data')
    })
  } catch (e) {
    out.result = 'error'
    out.error = 'cannot build prepare: ' + e.message
    out.ms = 0
    return out
  }
  const start = process.hrtime.bigint()
  const elapsed = () => round(Number(process.hrtime.bigint() - start) / 1e6)
  let timer
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(expiresInMs, 0) + graceMs)
  })
  let reply
  try {
    reply = await Promise.race([plugin.sendData(prepare), timeout])
  } catch (e) {
    out.result = 'error'
    out.error = String(e && e.message)
    out.ms = elapsed()
    return out
  } finally {
    clearTimeout(timer)
  }
  out.ms = elapsed()
  if (reply === 'timeout') {
    out.result = 'error'
    out.error = 'timeout'
    return out
  }
  let parsed
  try {
    parsed = IlpPacket.deserializeIlpPacket(reply)
  } catch (e) {
    out.result = 'error'
    out.error = 'bad reply: ' + e.message + ' (' + reply.length + ' bytes: ' + reply.slice(0, 64).toString('hex') + ')'
    return out
  }
  if (parsed.type === IlpPacket.Type.TYPE_ILP_FULFILL) {
    out.data = parsed.data.data.toString('hex')
    const ok = crypto.createHash('sha256').update(parsed.data.fulfillment).digest().equals(condition)
    if (ok) {
      out.result = 'fulfill'
    } else {
      out.result = 'error'
      out.error = 'fulfillment does not match condition'
    }
  } else if (parsed.type === IlpPacket.Type.TYPE_ILP_REJECT) {
    out.result = 'reject'
    out.code = parsed.data.code
    out.triggeredBy = parsed.data.triggeredBy
    out.message = parsed.data.message
    out.data = parsed.data.data.toString('hex')
  } else {
    out.result = 'error'
    out.error = 'bad reply: unexpected packet type ' + parsed.type
  }
  return out
}

async function main () {
  let plan
  try {
    plan = JSON.parse(await readStdin())
    validatePlan(plan)
  } catch (e) {
    fail('bad plan: ' + e.message)
  }

  const outgoing = {
    url: plan.url,
    http2: !!plan.http2,
    sendIlpDestination: !!plan.sendIlpDestination
  }
  if (plan.name) outgoing.name = plan.name
  if (plan.http2MaxRequestsPerSession) outgoing.http2MaxRequestsPerSession = plan.http2MaxRequestsPerSession
  for (const k of AUTH_KEYS) {
    if (plan.auth[k] !== undefined) outgoing[k] = plan.auth[k]
  }

  const plugin = new PluginHttp({
    multi: !!plan.multi,
    ildcp: plan.ildcp || { clientAddress: 'test.client', assetScale: 9, assetCode: 'XRP' },
    // The incoming side is mandatory but unused; keep it on a free loopback port.
    incoming: { port: loopbackPort(0), staticToken: crypto.randomBytes(16).toString('hex') },
    outgoing
  })
  plugin.registerDataHandler(async () => {
    throw new Error('client does not accept incoming packets')
  })
  const port = await connectLoopback(plugin)
  // Plugin default for ILP-Peer-Name is String(incoming.port); our incoming.port
  // is a listen-options object, so mirror the default with the real port.
  if (!plan.name) plugin._name = String(port)

  const counts = { fulfilled: 0, rejected: 0, errors: 0 }
  const concurrency = Math.max(1, Number(plan.concurrency) || 1)
  let next = 0
  async function sendNext () {
    const i = next++
    const out = await sendOne(plugin, plan, plan.packets[i], i)
    if (out.result === 'fulfill') counts.fulfilled++
    else if (out.result === 'reject') counts.rejected++
    else counts.errors++
    println(JSON.stringify(out))
  }
  async function worker () {
    while (next < plan.packets.length) await sendNext()
  }
  worker.once = sendNext
  // ilp-plugin-http 1.6.1 signs its first JWT asynchronously, and sends that
  // are already waiting meanwhile go out as "Bearer undefined" (401 from a
  // plugin server and from the edge alike). A real connector warms up the
  // same way in practice; here one packet goes alone first so that the
  // concurrent ones test the edge, not this race.
  if (plan.auth && (plan.auth.jwtSecret || plan.auth.secret) && plan.packets.length > 0) {
    await worker.once()
  }
  const workers = []
  for (let w = 0; w < Math.min(concurrency, plan.packets.length); w++) workers.push(worker())
  await Promise.all(workers)
  println(JSON.stringify(Object.assign({ done: true }, counts)))
  try { await plugin.disconnect() } catch (e) {}
  // Pending requests (timed-out ones) and keep-alive sockets would keep us alive.
  process.exit(0)
}

main().catch((e) => fail(e.stack || e.message))
