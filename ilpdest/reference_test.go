package ilpdest

import (
	"encoding/binary"
	"errors"
	"regexp"
	"time"
)

// This file holds a deliberately simple reference codec, written straight
// from RFC 27/30 with the standard library, that the fuzz tests compare the
// fast code against.

var refAddress = regexp.MustCompile(`^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`)

func refValidAddress(a string) bool { return len(a) <= 1023 && refAddress.MatchString(a) }

type refReader struct {
	b   []byte
	err error
}

func (r *refReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errors.New("underflow")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *refReader) length() int {
	first := r.take(1)
	if r.err != nil {
		return 0
	}
	if first[0] < 0x80 {
		return int(first[0])
	}
	size := int(first[0] & 0x7f)
	if size == 0 || size > 8 {
		r.err = errors.New("bad length prefix")
		return 0
	}
	lb := r.take(size)
	if r.err != nil {
		return 0
	}
	n := 0
	for _, c := range lb {
		n = n*256 + int(c)
	}
	if n < 128 || lb[0] == 0 {
		r.err = errors.New("non-canonical")
	}
	return n
}

func (r *refReader) varOctets() []byte { return r.take(r.length()) }

func refTimestamp(s string) (time.Time, bool) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
	}
	if len(s) != 17 {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405.000", s[:14]+"."+s[14:])
	if err != nil || t.UnixMilli() == 0 {
		return time.Time{}, false
	}
	return t, true
}

// refReadPrepare decodes a whole Prepare.
func refReadPrepare(b []byte) (Prepare, bool) {
	r := &refReader{b: b}
	typ := r.take(1)
	contents := r.varOctets()
	if r.err != nil || typ[0] != 12 {
		return Prepare{}, false
	}
	c := &refReader{b: contents}
	var p Prepare
	amount := c.take(8)
	ts := c.take(17)
	p.ExecutionCondition = c.take(32)
	p.Destination = c.varOctets()
	p.Data = c.varOctets()
	if c.err != nil {
		return Prepare{}, false
	}
	p.Amount = binary.BigEndian.Uint64(amount)
	var ok bool
	if p.ExpiresAt, ok = refTimestamp(string(ts)); !ok || !refValidAddress(string(p.Destination)) {
		return Prepare{}, false
	}
	return p, true
}

// refAppendPrepare encodes a Prepare, for building test inputs.
func refAppendPrepare(dst []byte, amount uint64, expiresAt string, cond []byte, dest string, data []byte) []byte {
	var c []byte
	c = binary.BigEndian.AppendUint64(c, amount)
	c = append(c, expiresAt...)
	c = append(c, cond...)
	c = refAppendVarOctets(c, []byte(dest))
	c = refAppendVarOctets(c, data)
	return refAppendVarOctets(append(dst, 12), c)
}

func refAppendVarOctets(dst, v []byte) []byte {
	n := len(v)
	switch {
	case n < 128:
		dst = append(dst, byte(n))
	case n < 256:
		dst = append(dst, 0x81, byte(n))
	default:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	}
	return append(dst, v...)
}
