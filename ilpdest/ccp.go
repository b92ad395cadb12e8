package ilpdest

import (
	"encoding/binary"
)

// The destinations of the connector-to-connector routing protocol's
// Prepares (CCP, as ilp-protocol-ccp and ilp-connector speak it): a peer
// asks for routes with peer.route.control and sends its own with
// peer.route.update. Both carry PeerProtocolCondition.
const (
	PeerRouteControl = "peer.route.control"
	PeerRouteUpdate  = "peer.route.update"
)

// AppendCCPFulfill appends to dst the Fulfill that accepts a CCP request,
// as ilp-protocol-ccp encodes it: a fulfillment of 32 zero bytes and no
// data.
func AppendCCPFulfill(dst []byte) []byte { return AppendFulfill(dst, make([]byte, 32), nil) }

// The modes a RouteControl asks for: IDLE stops a peer's route updates,
// SYNC asks for them.
const (
	ModeIdle uint8 = 0
	ModeSync uint8 = 1
)

// RouteControl is the data of a peer.route.control Prepare. The fields are
// ilp-protocol-ccp's, named alike. Mode is kept as sent, even a value
// other than ModeIdle and ModeSync: ilp-connector treats any mode but SYNC
// as IDLE.
type RouteControl struct {
	Mode                    uint8
	LastKnownRoutingTableID [16]byte // a UUID
	LastKnownEpoch          uint32
	Features                []string
}

// RouteProp is a route property, whose flags follow BGP's path attributes;
// they are ilp-protocol-ccp's isOptional, isTransitive, isPartial and
// isUtf8. Value is the raw bytes, even when UTF8 is set. ilp-connector
// sends no properties.
type RouteProp struct {
	Optional, Transitive, Partial, UTF8 bool
	ID                                  uint16
	Value                               []byte
}

// Route is a route a RouteUpdate announces: the ILP address prefix it
// reaches, the connectors' addresses on the way there, and its 32-byte
// auth.
type Route struct {
	Prefix string
	Path   []string
	Auth   [32]byte
	Props  []RouteProp
}

// RouteUpdate is the data of a peer.route.update Prepare: the routes added
// and withdrawn between two epochs of the speaker's routing table. The
// fields are ilp-protocol-ccp's, named alike.
type RouteUpdate struct {
	RoutingTableID    [16]byte // a UUID
	CurrentEpochIndex uint32
	FromEpochIndex    uint32
	ToEpochIndex      uint32
	HoldDownTime      uint32 // milliseconds
	Speaker           string // the sender's ILP address
	NewRoutes         []Route
	WithdrawnRoutes   []string // prefixes
}

// The flag bits of a route property's first byte; the low four are unused.
const (
	propOptional   = 0x80
	propTransitive = 0x40
	propPartial    = 0x20
	propUTF8       = 0x10
)

// The fewest bytes an element of each CCP sequence takes, with which
// ccpReader.count refuses a count the rest of the input cannot hold.
const (
	minStringSize = 1              // an empty var-octet string
	minPropSize   = 1 + 2 + 1      // flags, id, empty value
	minRouteSize  = 1 + 2 + 32 + 2 // empty prefix, no hops (var-uint 0), auth, no props
)

// ReadRouteControl reads the data of a peer.route.control Prepare, as
// ilp-protocol-ccp 1.2.3 encodes it: the mode (UInt8), the last known
// routing table id (16 bytes), the last known epoch (UInt32) and the
// features (a var-uint count of var-octet strings). It refuses truncation,
// non-canonical lengths and counts, and trailing bytes, so that
// AppendRouteControl gives back exactly data. Features are copies, nil if
// there are none. Errors are *ParseError values whose offsets count from
// the start of data.
func ReadRouteControl(data []byte) (RouteControl, error) {
	r := ccpReader{b: data}
	var c RouteControl
	c.Mode = uint8(r.uint(1, "mode"))
	copy(c.LastKnownRoutingTableID[:], r.fixed(16, "lastKnownRoutingTableId"))
	c.LastKnownEpoch = uint32(r.uint(4, "lastKnownEpoch"))
	c.Features = r.strings("features")
	if err := r.end("route control"); err != nil {
		return RouteControl{}, err
	}
	return c, nil
}

// AppendRouteControl appends c to dst as the data of a peer.route.control
// Prepare, byte for byte as ilp-protocol-ccp encodes it.
func AppendRouteControl(dst []byte, c RouteControl) []byte {
	dst = append(dst, c.Mode)
	dst = append(dst, c.LastKnownRoutingTableID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, c.LastKnownEpoch)
	return appendStrings(dst, c.Features)
}

// ReadRouteUpdate reads the data of a peer.route.update Prepare as
// ilp-protocol-ccp 1.2.3 encodes it: the routing table id (16 bytes); the
// current, from and to epochs and the hold-down time (UInt32 each); the
// speaker (var-octet string); the new routes; the withdrawn prefixes. A
// route is its prefix, its path, its 32-byte auth and its properties (a
// flag byte, a UInt16 id and a var-octet value each); every sequence has a
// var-uint count. It is stricter than ilp-protocol-ccp so that
// AppendRouteUpdate gives back exactly data: it refuses truncation,
// non-canonical lengths and counts, trailing bytes, and property flags
// that ilp-protocol-ccp never writes. Like ilp-protocol-ccp, it does not
// check that the speaker, prefixes and path are ILP addresses. Strings
// and values are copies; empty sequences and values are nil. Errors are
// *ParseError values whose offsets count from the start of data.
func ReadRouteUpdate(data []byte) (RouteUpdate, error) {
	r := ccpReader{b: data}
	var u RouteUpdate
	copy(u.RoutingTableID[:], r.fixed(16, "routingTableId"))
	u.CurrentEpochIndex = uint32(r.uint(4, "currentEpochIndex"))
	u.FromEpochIndex = uint32(r.uint(4, "fromEpochIndex"))
	u.ToEpochIndex = uint32(r.uint(4, "toEpochIndex"))
	u.HoldDownTime = uint32(r.uint(4, "holdDownTime"))
	u.Speaker = string(r.octets("speaker"))
	u.NewRoutes = sized[Route](r.count(minRouteSize, "newRoutes"))
	for i := range u.NewRoutes {
		u.NewRoutes[i] = r.route()
	}
	u.WithdrawnRoutes = r.strings("withdrawnRoutes")
	if err := r.end("route update"); err != nil {
		return RouteUpdate{}, err
	}
	return u, nil
}

// AppendRouteUpdate appends u to dst as the data of a peer.route.update
// Prepare, byte for byte as ilp-protocol-ccp encodes it. Like it, it
// writes a property's flags as BGP has them: a well-known (not optional)
// property as transitive, and the partial bit only on an optional
// transitive one, whatever Transitive and Partial say. Strings are
// written as their bytes, which for ILP addresses (ASCII) is what
// ilp-protocol-ccp's Buffer.from(s, 'ascii') writes.
func AppendRouteUpdate(dst []byte, u RouteUpdate) []byte {
	dst = append(dst, u.RoutingTableID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, u.CurrentEpochIndex)
	dst = binary.BigEndian.AppendUint32(dst, u.FromEpochIndex)
	dst = binary.BigEndian.AppendUint32(dst, u.ToEpochIndex)
	dst = binary.BigEndian.AppendUint32(dst, u.HoldDownTime)
	dst = appendVarOctets(dst, u.Speaker)
	dst = appendVarUInt(dst, len(u.NewRoutes))
	for _, rt := range u.NewRoutes {
		dst = appendVarOctets(dst, rt.Prefix)
		dst = appendStrings(dst, rt.Path)
		dst = append(dst, rt.Auth[:]...)
		dst = appendVarUInt(dst, len(rt.Props))
		for _, p := range rt.Props {
			dst = append(dst, propFlags(p))
			dst = binary.BigEndian.AppendUint16(dst, p.ID)
			dst = appendVarOctets(dst, p.Value)
		}
	}
	return appendStrings(dst, u.WithdrawnRoutes)
}

// propFlags is p's flag byte as ilp-protocol-ccp writes it.
func propFlags(p RouteProp) byte {
	var f byte
	switch {
	case !p.Optional:
		f = propTransitive
	case p.Transitive && p.Partial:
		f = propOptional | propTransitive | propPartial
	case p.Transitive:
		f = propOptional | propTransitive
	default:
		f = propOptional
	}
	if p.UTF8 {
		f |= propUTF8
	}
	return f
}

// ccpReader reads a CCP request's fields in order. It keeps the first
// error and makes every later read a no-op returning zero values, so a
// Read function checks for an error once, at the end.
type ccpReader struct {
	b   []byte
	off int
	err error
}

// fixed reads n bytes; nil after an error.
func (r *ccpReader) fixed(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.err = parseError(field, r.off, ErrTruncated)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

// uint reads an n-byte big-endian unsigned integer (OER UInt8 to UInt32).
func (r *ccpReader) uint(n int, field string) uint64 {
	var v uint64
	for _, c := range r.fixed(n, field) {
		v = v<<8 | uint64(c)
	}
	return v
}

// octets reads a var-octet string as a sub-slice of the input.
func (r *ccpReader) octets(field string) []byte {
	if r.err != nil {
		return nil
	}
	v, next, err := readVarOctets(r.b, r.off, field)
	r.off, r.err = next, err
	return v
}

// count reads the var-uint count of a sequence whose elements take at
// least minSize bytes each (oer-utils writes the count as a var-octet
// string of its big-endian bytes, one for zero, and no leading zeros). A
// count larger than the rest of the input can hold is truncation, so no
// count makes a reader allocate more than the input's length justifies.
func (r *ccpReader) count(minSize int, field string) int {
	start := r.off
	v := r.octets(field)
	if r.err != nil {
		return 0
	}
	if len(v) == 0 || len(v) > 1 && v[0] == 0 {
		r.err = parseError(field, start, ErrLengthPrefix)
		return 0
	}
	limit := (len(r.b) - r.off) / minSize
	n := 0
	for _, c := range v {
		if n = n<<8 | int(c); n > limit {
			r.err = parseError(field, start, ErrTruncated)
			return 0
		}
	}
	return n
}

// sized returns n zero Ts, or nil for none, so that empty sequences and
// values read back as they are in a zero RouteUpdate.
func sized[T any](n int) []T {
	if n == 0 {
		return nil
	}
	return make([]T, n)
}

// strings reads a count of var-octet strings, copying each.
func (r *ccpReader) strings(field string) []string {
	s := sized[string](r.count(minStringSize, field))
	for i := range s {
		s[i] = string(r.octets(field))
	}
	return s
}

// route reads one of a RouteUpdate's new routes.
func (r *ccpReader) route() Route {
	rt := Route{Prefix: string(r.octets("route prefix")), Path: r.strings("route path")}
	copy(rt.Auth[:], r.fixed(32, "route auth"))
	rt.Props = sized[RouteProp](r.count(minPropSize, "route props"))
	for i := range rt.Props {
		start := r.off
		f := byte(r.uint(1, "route prop flags"))
		p := RouteProp{Optional: f&propOptional != 0, Transitive: f&propTransitive != 0, Partial: f&propPartial != 0, UTF8: f&propUTF8 != 0}
		// Refuse what propFlags would not write back: the unused bits, a
		// well-known property not marked transitive, a partial one that
		// is not optional and transitive. ilp-protocol-ccp reads these,
		// but never writes them.
		if r.err == nil && propFlags(p) != f {
			r.err = parseError("route prop flags", start, ErrPropFlags)
		}
		p.ID = uint16(r.uint(2, "route prop id"))
		p.Value = append([]byte(nil), r.octets("route prop value")...) // a copy, nil if empty
		rt.Props[i] = p
	}
	return rt
}

// end returns the first error, or one if bytes follow the last field.
func (r *ccpReader) end(what string) error {
	if r.err == nil && r.off != len(r.b) {
		r.err = parseError(what, r.off, ErrTrailing)
	}
	return r.err
}

// appendVarOctets appends s as an OER var-octet string.
func appendVarOctets[S string | []byte](dst []byte, s S) []byte {
	return append(appendLength(dst, len(s)), s...)
}

// appendVarUInt appends n as the var-uint count of a sequence, as
// oer-utils writes it: a length, then n's big-endian bytes, one for zero.
func appendVarUInt(dst []byte, n int) []byte {
	size := 1
	for n>>(8*size) != 0 {
		size++
	}
	dst = appendLength(dst, size)
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(n>>(8*i)))
	}
	return dst
}

// appendStrings appends a var-uint count of var-octet strings.
func appendStrings(dst []byte, s []string) []byte {
	dst = appendVarUInt(dst, len(s))
	for _, v := range s {
		dst = appendVarOctets(dst, v)
	}
	return dst
}
