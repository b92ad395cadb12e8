package handler

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// unknownLengthBody is the first buffer for a body without Content-Length
// (ilp-plugin-http's HTTP/2 client sends none): big enough for most STREAM
// packets.
const unknownLengthBody = 2048

// Packet is one Prepare as ilp_edge read and checked it: the per-request
// state, allocated once. It is also the request body handed to the next
// handler, the exact bytes the peer sent, and its named views below are the
// values of the http.ilp.* placeholders, which are formatted only if
// something asks for them. Forwarders get it with PacketFrom.
type Packet struct {
	body        []byte
	prepare     ilpdest.Prepare
	destination string
	peer        *peer
	routeKey    string    // set by the forwarder (SetRoute), for the debug log
	upstream    string    // set by the forwarder (SetRoute): where the packet went last
	rank        int       // set by the forwarder (SetRoute): upstream's place in the ranking
	answer      answer    // what the peer got, for the placeholders
	charged     bool      // its amount was taken from the peer's throughput budget
	fannedOut   bool      // set by the forwarder (SetFannedOut)
	tried       uint64    // ilp_prefix: the pool indexes (below 64) it chose for this packet
	missed      []string  // the upstreams that answered it with a route miss (routemiss.go)
	start       time.Time // when its bytes were in: what its expiry and duration are measured from
	reader      bytes.Reader
	capture     responseCapture
	ctx         expiryContext // what the next handler sees

	// An asynchronous Prepare's Request-Id, for the placeholders; empty
	// for a synchronous one.
	requestID async.RequestID
	// The Request-Id ilp_egress sent the packet to a draft 3 peer with
	// (SetEgressRequestID), for the placeholders.
	egressRequestID async.RequestID
}

// detached is a new packet with p's bytes, peer and Request-Id, for an
// asynchronous exchange to go on with past the request that brought p: p
// stays as the request's access log reads it.
func (p *Packet) detached() *Packet {
	return &Packet{body: p.body, peer: p.peer, requestID: p.requestID}
}

// Read and Close make the packet the request body seen by the next handler.
func (p *Packet) Read(b []byte) (int, error) { return p.reader.Read(b) }

// Close does nothing: the body is in memory and may be read again.
func (p *Packet) Close() error { return nil }

// WriteTo lets io.Copy in the transport skip its intermediate buffer.
func (p *Packet) WriteTo(w io.Writer) (int64, error) { return p.reader.WriteTo(w) }

// Bytes returns the packet as the peer sent it. It must not be modified.
func (p *Packet) Bytes() []byte { return p.body }

// Prepare returns the Prepare as ilp_edge read it. Its slices alias the
// packet's bytes and must not be modified.
func (p *Packet) Prepare() ilpdest.Prepare { return p.prepare }

// Destination returns the ILP address the packet is routed by: from the
// packet, or from the ILP-Destination header when ilp_edge trusts it.
func (p *Packet) Destination() string { return p.destination }

// Peer returns the name of the peer that sent the packet, as ilp_edge
// authenticated it; "" without ilp_edge.
func (p *Packet) Peer() string {
	if p.peer == nil {
		return ""
	}
	return p.peer.name
}

// getBody is the request's GetBody: net/http calls it to resend the body
// when it retries a request that never reached the backend.
func (p *Packet) getBody() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(p.body)), nil
}

// ReadPacket reads the Prepare in r's body for a forwarder that runs
// without ilp_edge before it, which then does no authentication and makes
// no Rejects: a body over maxSize is a 413 and one that is not a Prepare a
// 400, as handler errors. As ilp_edge does, it drops the Connection header
// and the fields it names, so that a forwarder sends on r's header as it
// is, less the fixed hop-by-hop fields.
func ReadPacket(r *http.Request, maxSize int64) (*Packet, error) {
	dropConnectionFields(r.Header)
	p := new(Packet)
	tooLarge, err := p.readBody(r, maxSize)
	if tooLarge {
		return nil, caddyhttp.Error(http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxSize))
	}
	if err != nil {
		return nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
	}
	if p.prepare, err = ilpdest.ReadPrepareHeader(p.body); err != nil {
		return nil, caddyhttp.Error(http.StatusBadRequest, err)
	}
	p.destination = string(p.prepare.Destination)
	return p, nil
}

// readBody reads the request body into p.body, refusing bodies over max
// without reading more than max+1 bytes of them.
func (p *Packet) readBody(r *http.Request, max int64) (tooLarge bool, err error) {
	if r.ContentLength > max {
		return true, nil
	}
	// One byte more than announced, so that reading a body longer than
	// announced shows up without a second allocation.
	size := r.ContentLength + 1
	if r.ContentLength < 0 {
		size = unknownLengthBody
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > max {
				return true, nil
			}
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):cap(buf)]
		if limit := max + 1 - int64(len(buf)); int64(len(room)) > limit {
			room = room[:limit]
		}
		n, err := r.Body.Read(room)
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return true, nil
		}
		if err == io.EOF {
			p.body = buf
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
