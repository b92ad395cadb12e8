'use strict'
// An ILP plugin that speaks RFC 35 draft 3 (asynchronous ILP over HTTP),
// written from the RFC's text (interledger/rfcs 0035, 2026-03-11): no
// implementation of draft 3 exists to test the edge against.
//
// sendData(prepare) POSTs the Prepare to `url` with Content-Type and
// Accept application/octet-stream, Authorization: Bearer <token>, a fresh
// Request-Id (a version 4 UUID from Node's CSPRNG) and Callback-Url
// <callbackBase><Request-Id>, and expects 202 Accepted. The reply comes as
// a POST to the plugin's callback server (127.0.0.1:<callbackPort>), which
// checks the edge's credential (Bearer <callbackToken>: 401 otherwise),
// takes the first reply for an id in flight (200) and refuses any other
// (400: unknown id, or a reply already processed), as the draft says. The
// Prepare's sendData resolves with that reply; with none by the
// Prepare's expiry, with an R00 Reject of its own. A 4xx to the Prepare
// resolves with F00, a 5xx or no answer with T00 (the draft: 5xx SHOULD
// become T00), so that STREAM handles them as Rejects.
//
// The callback server can misbehave on demand, for the fault tests:
// failFirst answers 503 to that many replies (then 200 to their
// retries); status answers that status to every reply.
//
// It implements what ilp-protocol-stream uses of a plugin: connect,
// disconnect, isConnected, sendData, sendMoney and the data and money
// handlers; peer.config (ILDCP) is answered by the caller's wrapper.

const crypto = require('crypto')
const http = require('http')
const { EventEmitter } = require('events')
const IlpPacket = require('ilp-packet')

class AsyncPlugin extends EventEmitter {
  constructor ({ url, token, callbackPort, callbackToken, failFirst = 0, status = 200 }) {
    super()
    this.url = url
    this.token = token
    this.callbackPort = Number(callbackPort)
    this.callbackToken = callbackToken
    this.failFirst = Number(failFirst)
    this.status = Number(status)
    this.pending = new Map() // Request-Id -> resolve
    this.stats = { sent: 0, accepted: 0, replies: 0, duplicates: 0, refused: 0 }
    this.connected = false
    this.agent = new http.Agent({ keepAlive: true })
  }

  async connect () {
    if (this.connected) return
    this.server = http.createServer((req, res) => this._callback(req, res))
    await new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.callbackPort, '127.0.0.1', resolve)
    })
    this.connected = true
    this.emit('connect')
  }

  async disconnect () {
    if (!this.connected) return
    this.connected = false
    this.agent.destroy()
    await new Promise((resolve) => this.server.close(resolve))
    this.emit('disconnect')
  }

  isConnected () { return this.connected }

  _callback (req, res) {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      if (req.method !== 'POST' || req.headers.authorization !== 'Bearer ' + this.callbackToken) {
        res.writeHead(401).end()
        return
      }
      if (this.failFirst > 0) {
        this.failFirst--
        res.writeHead(503).end()
        return
      }
      const id = req.headers['request-id']
      const resolve = this.pending.get(id)
      if (!resolve) {
        this.stats.duplicates++
        res.writeHead(400).end() // unknown, or already processed
        return
      }
      if (this.status !== 200) {
        res.writeHead(this.status).end()
        return
      }
      this.pending.delete(id)
      this.stats.replies++
      res.writeHead(200).end()
      resolve(Buffer.concat(chunks))
    })
  }

  reject (code, message) {
    return IlpPacket.serializeIlpReject({ code, triggeredBy: 'test.sender', message, data: Buffer.alloc(0) })
  }

  async sendData (data) {
    const prepare = IlpPacket.deserializeIlpPrepare(data)
    const id = crypto.randomUUID()
    const left = Math.max(prepare.expiresAt.getTime() - Date.now(), 0)
    const reply = new Promise((resolve) => {
      this.pending.set(id, resolve)
      setTimeout(() => {
        if (this.pending.delete(id)) resolve(this.reject('R00', 'no reply by callback before the expiry'))
      }, left)
    })
    this.stats.sent++
    const status = await this._post(data, id).catch(() => 0)
    if (status !== 202) {
      this.pending.delete(id)
      if (status >= 400 && status < 500) {
        this.stats.refused++
        return this.reject('F00', `edge answered ${status}`)
      }
      return this.reject('T00', `edge answered ${status || 'nothing'}`)
    }
    this.stats.accepted++
    return reply
  }

  _post (data, id) {
    const u = new URL(this.url)
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent: this.agent,
        headers: {
          'Content-Type': 'application/octet-stream',
          Accept: 'application/octet-stream',
          Authorization: 'Bearer ' + this.token,
          'Request-Id': id,
          'Callback-Url': `http://127.0.0.1:${this.callbackPort}/callback/${id}`,
          'Content-Length': data.length
        }
      }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      })
      req.on('error', reject)
      req.end(data)
    })
  }

  async sendMoney () {}
  registerDataHandler (h) { this.dataHandler = h }
  deregisterDataHandler () { this.dataHandler = null }
  registerMoneyHandler (h) { this.moneyHandler = h }
  deregisterMoneyHandler () { this.moneyHandler = null }
}

module.exports = { AsyncPlugin }
