// Generates ccp-vectors.json, the CCP vectors ccp_test.go checks, with
// ilp-protocol-ccp 1.2.3 (what ilp-connector 23.0.1 speaks). From the
// repository root, after `cd integration/js && npm ci`:
//
//	node ilpdest/testdata/ccp-vectors.js > ilpdest/testdata/ccp-vectors.json
//
// Each vector is a whole Prepare as serializeCcpRouteControlRequest or
// serializeCcpRouteUpdateRequest writes it, with Date.now fixed so that its
// expiresAt (now + 60 s) is too, and the fields it was given, in the form
// Go holds them:
//   - table ids as ilp-protocol-ccp's dashed UUIDs, auth and prop values
//     in hex;
//   - strings as the UTF-8 they are on the wire. ilp-protocol-ccp writes
//     addresses with Buffer.from(s, 'ascii'), the low byte of each UTF-16
//     unit, so it is handed the latin1 reading of each address's UTF-8
//     bytes, which it writes out unchanged.
// The serializer rewrites some prop flags (a well-known prop is always
// transitive, only an optional transitive one can be partial), so each prop
// also records as "decoded" the flags deserializeCcpRouteUpdateRequest reads
// back.
'use strict'

const path = require('path')
const modules = [path.join(__dirname, '../../integration/js/node_modules')]
const load = name => require(require.resolve(name, { paths: modules }))

const ccp = load('ilp-protocol-ccp')
const { deserializeIlpPrepare } = load('ilp-packet')
const version = load('ilp-protocol-ccp/package.json').version
if (version !== '1.2.3') throw new Error(`ilp-protocol-ccp ${version}, want 1.2.3`)
const oerUtils = load('oer-utils/package.json').version

const now = Date.parse('2024-05-06T07:08:09.123Z')
Date.now = () => now

const ascii = s => Buffer.from(s, 'utf8').toString('latin1')
const bytes = (n, f) => Buffer.from(Array.from({ length: n }, (_, i) => f(i) & 0xff))
const zeroId = '00000000-0000-0000-0000-000000000000'
const someId = 'b5f5e2f4-3a1e-4e53-9c0b-6a1d2e7f8a90'

const routeControls = [
  { name: 'idle, zero table id', fields: { mode: ccp.Mode.MODE_IDLE, lastKnownRoutingTableId: zeroId, lastKnownEpoch: 0, features: [] } },
  { name: 'sync, as ilp-connector first asks', fields: { mode: ccp.Mode.MODE_SYNC, lastKnownRoutingTableId: zeroId, lastKnownEpoch: 0, features: [] } },
  { name: 'sync from a known table and epoch', fields: { mode: ccp.Mode.MODE_SYNC, lastKnownRoutingTableId: someId, lastKnownEpoch: 42, features: ['foo', 'bar'] } },
  {
    name: 'idle, largest epoch, UTF-8, empty and long features',
    fields: { mode: ccp.Mode.MODE_IDLE, lastKnownRoutingTableId: 'ffffffff-ffff-ffff-ffff-ffffffffffff', lastKnownEpoch: 2 ** 32 - 1, features: ['dée', '', 'x'.repeat(200)] }
  },
  {
    name: '300 features (a two-byte count)',
    fields: { mode: ccp.Mode.MODE_SYNC, lastKnownRoutingTableId: someId, lastKnownEpoch: 7, features: Array.from({ length: 300 }, (_, i) => 'f' + i) }
  }
]

// Every combination of the four flags, given as is to the serializer.
const everyFlag = Array.from({ length: 16 }, (_, i) => ({
  isOptional: Boolean(i & 8),
  isTransitive: Boolean(i & 4),
  isPartial: Boolean(i & 2),
  isUtf8: Boolean(i & 1),
  id: i === 15 ? 0xffff : i * 4099,
  value: i & 1 ? Buffer.from('prop ' + i).toString('hex') : bytes(i, j => j * 37 + i).toString('hex')
}))

const routeUpdates = [
  {
    name: 'heartbeat',
    fields: { routingTableId: someId, currentEpochIndex: 7, fromEpochIndex: 7, toEpochIndex: 7, holdDownTime: 45000, speaker: 'test.connector', newRoutes: [], withdrawnRoutes: [] }
  },
  {
    name: 'new routes with multi-hop paths, props of every flag combination, withdrawn routes',
    fields: {
      routingTableId: 'c0ffee00-1234-5678-9abc-def012345678',
      currentEpochIndex: 12,
      fromEpochIndex: 3,
      toEpochIndex: 12,
      holdDownTime: 30000,
      speaker: 'g.conn1',
      newRoutes: [
        { prefix: 'g.alice', path: ['g.conn1', 'g.conn2', 'g.alice'], auth: bytes(32, i => i).toString('hex'), props: everyFlag },
        { prefix: 'g.bob.sub', path: ['g.conn1'], auth: bytes(32, i => 255 - i * 7).toString('hex'), props: [] },
        { prefix: 'g.alice.child', path: [], auth: bytes(32, () => 0).toString('hex'), props: [{ isOptional: true, isTransitive: false, isPartial: false, isUtf8: false, id: 0, value: '' }] }
      ],
      withdrawnRoutes: ['g.carol', 'g.dave.x']
    }
  },
  {
    name: 'largest epochs and hold-down, withdrawals only',
    fields: { routingTableId: 'ffffffff-ffff-ffff-ffff-ffffffffffff', currentEpochIndex: 2 ** 32 - 1, fromEpochIndex: 2 ** 32 - 2, toEpochIndex: 2 ** 32 - 1, holdDownTime: 2 ** 32 - 1, speaker: 'g.x', newRoutes: [], withdrawnRoutes: ['g.a', 'g.b', 'g.c'] }
  },
  {
    name: 'non-ASCII speaker, prefix, path, prop and withdrawn route',
    fields: {
      routingTableId: zeroId,
      currentEpochIndex: 1,
      fromEpochIndex: 0,
      toEpochIndex: 1,
      holdDownTime: 45000,
      speaker: 'g.zürich.connector',
      newRoutes: [{
        prefix: 'g.zürich.alice',
        path: ['g.zürich.connector', 'g.ñ'],
        auth: bytes(32, i => i * 11).toString('hex'),
        props: [{ isOptional: true, isTransitive: true, isPartial: false, isUtf8: true, id: 300, value: Buffer.from('Grüße €').toString('hex') }]
      }],
      withdrawnRoutes: ['g.münchen']
    }
  },
  {
    name: 'long prefix, path, prop value and 300 withdrawn routes (two-byte lengths and count)',
    fields: {
      routingTableId: someId,
      currentEpochIndex: 65536,
      fromEpochIndex: 256,
      toEpochIndex: 65536,
      holdDownTime: 1,
      speaker: 'g.' + 'a'.repeat(200),
      newRoutes: [{
        prefix: 'g.' + 'p'.repeat(300),
        path: Array.from({ length: 130 }, (_, i) => 'g.hop' + i),
        auth: bytes(32, i => i * 3).toString('hex'),
        props: [{ isOptional: false, isTransitive: true, isPartial: false, isUtf8: false, id: 1, value: bytes(300, i => i).toString('hex') }]
      }],
      withdrawnRoutes: Array.from({ length: 300 }, (_, i) => 'g.w' + i)
    }
  }
]

// toCcp turns a vector's fields into what ilp-protocol-ccp's serializer takes.
const toCcp = f => ({
  ...f,
  speaker: ascii(f.speaker),
  newRoutes: f.newRoutes.map(r => ({
    prefix: ascii(r.prefix),
    path: r.path.map(ascii),
    auth: Buffer.from(r.auth, 'hex'),
    props: r.props.map(p => ({ ...p, value: p.isUtf8 ? Buffer.from(p.value, 'hex').toString('utf8') : Buffer.from(p.value, 'hex') }))
  })),
  withdrawnRoutes: f.withdrawnRoutes.map(ascii)
})

// prepare serializes a request and checks the Prepare it makes.
const prepare = (serialize, deserialize, destination, fields) => {
  const raw = serialize(fields)
  const p = deserializeIlpPrepare(raw)
  if (p.amount !== '0' || p.destination !== destination || !p.executionCondition.equals(ccp.PEER_PROTOCOL_CONDITION)) {
    throw new Error('unexpected Prepare ' + JSON.stringify(p))
  }
  return { expiresAt: p.expiresAt.toISOString(), hex: raw.toString('hex'), decoded: deserialize(raw) }
}

const out = {
  generated_by: `ilpdest/testdata/ccp-vectors.js with ilp-protocol-ccp@${version} (oer-utils@${oerUtils}) under Node.js ${process.version}`,
  routeControl: routeControls.map(v => {
    const { expiresAt, hex } = prepare(ccp.serializeCcpRouteControlRequest, ccp.deserializeCcpRouteControlRequest, ccp.CCP_CONTROL_DESTINATION, v.fields)
    return { name: v.name, expiresAt, hex, fields: v.fields }
  }),
  routeUpdate: routeUpdates.map(v => {
    const { expiresAt, hex, decoded } = prepare(ccp.serializeCcpRouteUpdateRequest, ccp.deserializeCcpRouteUpdateRequest, ccp.CCP_UPDATE_DESTINATION, toCcp(v.fields))
    const fields = {
      ...v.fields,
      newRoutes: v.fields.newRoutes.map((r, i) => ({
        ...r,
        props: r.props.map((p, j) => {
          const { isOptional, isTransitive, isPartial, isUtf8 } = decoded.newRoutes[i].props[j]
          return { ...p, decoded: { isOptional, isTransitive, isPartial, isUtf8 } }
        })
      }))
    }
    return { name: v.name, expiresAt, hex, fields }
  })
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n')
