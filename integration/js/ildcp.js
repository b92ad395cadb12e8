'use strict'
// A real ILDCP child: ilp-plugin-http 1.6.1 asks its parent (the edge) for
// its address with ilp-protocol-ildcp's fetch, as a child connector does.
//
//   node ildcp.js --url http://127.0.0.1:9080/ --token T
//
// prints ADDRESS <clientAddress> <assetScale> <assetCode>, or FAILED <reason>.

const ILDCP = require('ilp-protocol-ildcp')
const PluginHttp = require('ilp-plugin-http').default
const { loopbackPort, connectLoopback, parseArgs, println } = require('./lib')

async function main (args) {
  const plugin = new PluginHttp({
    incoming: { port: loopbackPort(0), staticToken: 'unused' },
    outgoing: { url: args.url, staticToken: args.token }
  })
  await connectLoopback(plugin)
  try {
    const c = await ILDCP.fetch(plugin.sendData.bind(plugin))
    println(`ADDRESS ${c.clientAddress} ${c.assetScale} ${c.assetCode}`)
  } catch (e) {
    println('FAILED ' + String(e.message).replace(/\n/g, ' '))
  }
  await plugin.disconnect()
}

main(parseArgs(process.argv.slice(2), { url: { type: 'string' }, token: { type: 'string' } }))
  .catch((e) => { println('FAILED ' + String(e.stack).replace(/\n/g, ' ')); process.exit(1) })
