package h2

import (
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// This file decodes and checks header blocks. A block (HEADERS, then
// CONTINUATION frames until END_HEADERS) is fed to the connection's HPACK
// decoder fragment by fragment as its frames arrive, never buffered
// whole; each field is checked as it is decoded (RFC 9113 §8.2 and §8.3)
// and kept, in the stream's buffer, only while the list is within
// MaxHeaderBytes. A block whose fragments exceed twice MaxHeaderBytes, or
// that takes too many CONTINUATION frames, closes the connection
// (CVE-2024-27316, CONTINUATION flood). Every block is decoded to its
// end, even one whose stream is refused: HPACK's table is the
// connection's, and skipping a block would corrupt it.

// blockKind says what a header block is for.
type blockKind uint8

const (
	blockRequest  blockKind = iota // opens a stream
	blockTrailers                  // ends an open stream's request; checked, not kept
	blockDropped                   // decoded only for HPACK's sake: the stream is refused or closed
)

// span is a value's place in the stream's hdr buffer.
type span struct {
	start, end int32
	set        bool
}

// fieldSpan is a regular field's place in the stream's hdr buffer.
type fieldSpan struct{ name, value span }

// headerBlock is the block being decoded; id 0 when none is.
type headerBlock struct {
	id        uint32
	st        *stream
	kind      blockKind
	endStream bool // the HEADERS frame carried END_STREAM
	selfDep   bool // the HEADERS frame made the stream depend on itself
	silent    bool // a dropped block on a stream we reset: no RST_STREAM
	frames    int  // CONTINUATION frames so far
	wire      int  // fragment bytes so far
	size      int  // decoded size, RFC 9113 §6.5.2
	tooLarge  bool
	malformed string // why the block is malformed, or ""

	sawRegular                      bool
	method, path, authority, scheme span
	fields                          []fieldSpan
}

// start begins a block on stream id.
func (hb *headerBlock) start(id uint32, kind blockKind, st *stream, endStream bool) {
	fields := hb.fields[:0]
	*hb = headerBlock{id: id, kind: kind, st: st, endStream: endStream, fields: fields}
}

// limits on a header block's wire form, past which the connection is
// closed rather than the request refused.
func (c *conn) maxBlockWire() int     { return 2 * c.srv.MaxHeaderBytes }
func (c *conn) maxContinuations() int { return c.maxBlockWire()/1024 + 16 }

// fragment feeds a block fragment to the decoder, and ends the block at
// END_HEADERS.
func (c *conn) fragment(frag []byte, endHeaders bool) error {
	hb := &c.hb
	hb.wire += len(frag)
	if hb.wire > c.maxBlockWire() {
		return connErr(http2.ErrCodeEnhanceYourCalm, "header block over the limit")
	}
	if _, err := c.hdec.Write(frag); err != nil {
		return connErr(http2.ErrCodeCompression, "HPACK: "+err.Error())
	}
	if !endHeaders {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		return connErr(http2.ErrCodeCompression, "HPACK: "+err.Error())
	}
	return c.endBlock()
}

// onField is the decoder's emit function: it checks one field and keeps
// it in the stream's buffer.
func (c *conn) onField(f hpack.HeaderField) {
	hb := &c.hb
	if hb.kind == blockDropped {
		return
	}
	hb.size += len(f.Name) + len(f.Value) + 32
	if hb.size > c.srv.MaxHeaderBytes {
		hb.tooLarge = true
	}
	if hb.tooLarge || hb.malformed != "" {
		return
	}
	if reason := hb.check(f); reason != "" {
		hb.malformed = reason
		return
	}
	if hb.kind == blockTrailers {
		return
	}
	st := hb.st
	keep := func(v string) span {
		s := span{start: int32(len(st.hdr)), set: true}
		st.hdr = append(st.hdr, v...)
		s.end = int32(len(st.hdr))
		return s
	}
	switch f.Name {
	case ":method":
		hb.method = keep(f.Value)
	case ":path":
		hb.path = keep(f.Value)
	case ":authority":
		hb.authority = keep(f.Value)
	case ":scheme":
		hb.scheme = keep(f.Value)
	default:
		hb.fields = append(hb.fields, fieldSpan{keep(f.Name), keep(f.Value)})
	}
}

// check judges one field, and returns why it makes the request
// malformed, or "".
func (hb *headerBlock) check(f hpack.HeaderField) string {
	name, value := f.Name, f.Value
	if name == "" {
		return "empty field name"
	}
	if !validValue(value) {
		return "invalid value for " + name
	}
	if name[0] == ':' {
		if hb.kind == blockTrailers {
			return "pseudo-header in trailers"
		}
		if hb.sawRegular {
			return "pseudo-header after a regular field"
		}
		var sp *span
		switch name {
		case ":method":
			sp = &hb.method
		case ":path":
			sp = &hb.path
		case ":authority":
			sp = &hb.authority
		case ":scheme":
			sp = &hb.scheme
		default:
			return "unknown pseudo-header " + name
		}
		if sp.set {
			return "repeated " + name
		}
		return ""
	}
	hb.sawRegular = true
	for i := range len(name) {
		if chars[name[i]]&nameChar == 0 {
			if 'A' <= name[i] && name[i] <= 'Z' {
				return "upper case in field name"
			}
			return "field name not a token"
		}
	}
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return "connection-specific field " + name
	case "te":
		if value != "trailers" {
			return "te other than trailers"
		}
	case "content-length":
		if hb.kind != blockRequest {
			break
		}
		if hb.st.contentLength >= 0 {
			return "repeated content-length"
		}
		n, ok := parseLength(value)
		if !ok {
			return "invalid content-length"
		}
		hb.st.contentLength = n
	}
	return ""
}

// endBlock acts on a whole header block.
func (c *conn) endBlock() error {
	hb := &c.hb
	id, st, kind := hb.id, hb.st, hb.kind
	hb.id = 0
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case blockDropped:
		if !hb.silent { // refused for MaxConcurrentStreams or a shutdown
			c.rstLocked(id, http2.ErrCodeRefusedStream)
			c.closed.add(id, closedByUs)
		}
		return nil
	case blockTrailers:
		switch {
		case st.closedHow == closedByUs:
			// Reset by us while its early handler runs: ignored, as once
			// released (RFC 9113 §5.1).
		case st.state != stateOpen:
			// RFC 9113 §5.1: half-closed (remote) takes no HEADERS.
			c.resetLocked(st, http2.ErrCodeStreamClosed)
		case hb.malformed != "" || hb.tooLarge || !hb.endStream || hb.selfDep:
			c.resetLocked(st, http2.ErrCodeProtocol)
		default:
			c.endRequestLocked(st)
		}
		return nil
	}

	// A request's header block.
	switch {
	case hb.malformed != "" || hb.selfDep:
		c.resetLocked(st, http2.ErrCodeProtocol)
		return nil
	case hb.tooLarge:
		c.refuseLocked(st, http.StatusRequestHeaderFieldsTooLarge, hb.endStream)
		return nil
	case !hb.method.set:
		c.resetLocked(st, http2.ErrCodeProtocol)
		return nil
	}
	method := st.hdr[hb.method.start:hb.method.end]
	if string(method) == "CONNECT" {
		c.refuseLocked(st, http.StatusMethodNotAllowed, hb.endStream)
		return nil
	}
	path := st.hdr[hb.path.start:hb.path.end]
	authority := st.hdr[hb.authority.start:hb.authority.end]
	if !hb.scheme.set || !hb.path.set || !validToken(method) || !validPath(string(method), path) || !validAuthority(authority) {
		c.resetLocked(st, http2.ErrCodeProtocol)
		return nil
	}
	if st.contentLength > int64(c.srv.MaxBodyBytes) {
		c.refuseLocked(st, http.StatusRequestEntityTooLarge, hb.endStream)
		return nil
	}
	r := &st.req
	r.Method = method
	r.Path = path
	r.Authority = authority
	r.Scheme = st.hdr[hb.scheme.start:hb.scheme.end]
	r.ContentLength = st.contentLength
	if c.remote == "" { // formatted once per connection
		c.remote = c.nc.RemoteAddr().String()
	}
	r.remote = c.remote
	r.tls = c.tlsState()
	r.id = id
	for _, f := range hb.fields {
		r.fields = append(r.fields, Field{
			Name:  st.hdr[f.name.start:f.name.end],
			Value: st.hdr[f.value.start:f.value.end],
		})
	}
	if hb.endStream {
		c.endRequestLocked(st)
	} else if c.srv.HandleOnHead && !c.requestBuffered(id) {
		c.handleOnHeadLocked(st) // body.go
	}
	return nil
}

// validToken reports whether a method is an RFC 9110 token (upper case
// allowed).
func validToken(m []byte) bool {
	if len(m) == 0 {
		return false
	}
	for _, b := range m {
		if chars[b]&nameChar == 0 && !('A' <= b && b <= 'Z') {
			return false
		}
	}
	return true
}
