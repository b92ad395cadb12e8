package ilpdest

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var testCondition = bytes.Repeat([]byte{0xaa}, 32)

func TestReadPrepareTimestamps(t *testing.T) {
	for _, c := range []struct {
		ts   string
		want time.Time // zero: must be refused
	}{
		{"20171223012140549", time.Date(2017, 12, 23, 1, 21, 40, 549e6, time.UTC)},
		{"20000229235959999", time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC)},
		{"00000101000000000", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"99991231235959999", time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
		{"19691231235959999", time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC)},
		{"20171323012140549", time.Time{}}, // month 13: ilp-packet rolls over, interledger-rs refuses
		{"20170001012140549", time.Time{}}, // month 0
		{"20170100012140549", time.Time{}}, // day 0
		{"19000229000000000", time.Time{}}, // 1900 is not a leap year
		{"20170431000000000", time.Time{}}, // April has 30 days
		{"20171223242140549", time.Time{}}, // hour 24
		{"20171223016040549", time.Time{}}, // minute 60
		{"20171223012160549", time.Time{}}, // second 60
		{"2017122301214054a", time.Time{}},
		{"2017-12-23T01:21Z", time.Time{}},
		{"19700101000000000", time.Time{}}, // the epoch: ilp-packet refuses it
	} {
		b := refAppendPrepare(nil, 1, c.ts, testCondition, "g.a", nil)
		p, err := ReadPrepare(b)
		if c.want.IsZero() {
			var pe *ParseError
			if !errors.Is(err, ErrTimestamp) || !errors.As(err, &pe) || pe.Field != "expiresAt" || pe.Offset != 10 {
				t.Errorf("%s: err = %v, want expiresAt ErrTimestamp at offset 10", c.ts, err)
			}
			continue
		}
		if err != nil || !p.ExpiresAt.Equal(c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.ts, p.ExpiresAt, err, c.want)
		}
	}
}

func TestReadPrepareRefuses(t *testing.T) {
	good := refAppendPrepare(nil, 107, "20171223012140549", testCondition, "example.alice", []byte("hello"))
	destOff := 2 + fixedLen
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, c := range []struct {
		name   string
		b      []byte
		err    error
		field  string
		offset int
	}{
		{"empty", nil, ErrTruncated, "type", 0},
		{"fulfill type", mod(func(b []byte) []byte { b[0] = 13; return b }), ErrType, "type", 0},
		{"type only", good[:1], ErrTruncated, "envelope length", 1},
		{"indefinite length", mod(func(b []byte) []byte { b[1] = 0x80; return b }), ErrLengthPrefix, "envelope length", 1},
		{"five length bytes", append([]byte{12, 0x85, 0, 0, 0, 0, 77}, good[2:]...), ErrLengthPrefix, "envelope length", 1},
		{"leading zero length byte", append([]byte{12, 0x82, 0, 77}, good[2:]...), ErrLengthPrefix, "envelope length", 1},
		{"long form below 128", append([]byte{12, 0x81, 77}, good[2:]...), ErrLengthPrefix, "envelope length", 1},
		{"contents end before destination", mod(func(b []byte) []byte { b[1] = fixedLen + 3; return b }), ErrTruncated, "destination", destOff},
		{"fixed fields cut", good[:30], ErrTruncated, "amount, expiresAt and executionCondition", 2},
		{"data overruns contents", mod(func(b []byte) []byte { b[len(b)-6] = 6; return b }), ErrTruncated, "data", len(good) - 6},
		{"envelope cut", good[:len(good)-1], ErrTruncated, "envelope length", 1},
		{"bad destination", refAppendPrepare(nil, 1, "20171223012140549", testCondition, "g", nil), ErrAddress, "destination", destOff},
		{"destination 1024 bytes", refAppendPrepare(nil, 1, "20171223012140549", testCondition, "g."+string(bytes.Repeat([]byte("a"), 1022)), nil), ErrAddress, "destination", 4 + fixedLen},
	} {
		_, err := ReadPrepare(c.b)
		var pe *ParseError
		if !errors.Is(err, c.err) || !errors.As(err, &pe) || pe.Field != c.field || pe.Offset != c.offset {
			t.Errorf("%s: err = %v; want %v in %q at offset %d", c.name, err, c.err, c.field, c.offset)
		}
	}
}

func TestReadPrepareTolerates(t *testing.T) {
	inner := refAppendPrepare(nil, 5, "20171223012140549", testCondition, "g.a.b", []byte("xyz"))
	// Extra bytes inside the contents, after data (the length grows by 2).
	padded := append(append([]byte{12, inner[1] + 2}, inner[2:]...), 0xde, 0xad)
	for name, b := range map[string][]byte{
		"trailing after envelope":  append(append([]byte(nil), inner...), 1, 2, 3),
		"trailing inside contents": padded,
		"long data":                refAppendPrepare(nil, 5, "20171223012140549", testCondition, "g.a.b", make([]byte, 40000)),
	} {
		p, err := ReadPrepare(b)
		if err != nil || string(p.Destination) != "g.a.b" || p.Amount != 5 {
			t.Errorf("%s: %+v, %v", name, p, err)
		}
	}
}

func TestReadPrepareDoesNotCopy(t *testing.T) {
	b := refAppendPrepare(nil, 5, "20171223012140549", testCondition, "g.a.b", []byte("xyz"))
	p, err := ReadPrepare(b)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'Z'
	b[len(b)-5] = 'B'
	if string(p.Data) != "xyZ" || string(p.Destination) != "g.a.B" {
		t.Fatalf("fields do not alias the input: %q %q", p.Data, p.Destination)
	}
}

func TestReadResponse(t *testing.T) {
	reject := AppendReject(nil, Reject{Code: CodeT01, TriggeredBy: "g.edge", Message: "down"})
	if typ, err := ReadResponseType(reject); typ != TypeReject || err != nil {
		t.Errorf("reject: %v %v", typ, err)
	}
	prepare := refAppendPrepare(nil, 5, "20171223012140549", testCondition, "g.a.b", nil)
	for name, b := range map[string][]byte{
		"prepare":   prepare,
		"empty":     nil,
		"cut":       reject[:len(reject)-1],
		"text body": []byte("Bad Gateway"),
		"html":      []byte("<html>"),
	} {
		if typ, err := ReadResponseType(b); err == nil {
			t.Errorf("%s: ReadResponseType = %v, want an error", name, typ)
		}
	}
	if _, err := ReadRejectCode(reject[:3]); err == nil {
		t.Errorf("ReadRejectCode accepted a cut reject")
	}
	if code, err := ReadRejectCode(reject); code != CodeT01 || err != nil || code.String() != "T01" {
		t.Errorf("ReadRejectCode = %v, %v", code, err)
	}
}

func TestAppendRejectLongFields(t *testing.T) {
	for _, n := range []int{0, 127, 128, 255, 256, 8191, 70000} {
		msg := string(bytes.Repeat([]byte("m"), n))
		b := AppendReject(nil, Reject{Code: Code{'F', '9', '9'}, TriggeredBy: "g.e", Message: msg, Data: []byte{1}})
		r := &refReader{b: b}
		r.take(1)
		c := &refReader{b: r.varOctets()}
		c.take(3)
		tb := c.varOctets()
		m := c.varOctets()
		d := c.varOctets()
		if r.err != nil || c.err != nil || string(tb) != "g.e" || string(m) != msg || !bytes.Equal(d, []byte{1}) || len(r.b) != 0 {
			t.Errorf("message of %d bytes did not round-trip: %v %v", n, r.err, c.err)
		}
	}
}

// TestMalformedReplies: a reply is a Fulfill or Reject only when every
// field is there; a type byte and a plausible length are not enough.
func TestMalformedReplies(t *testing.T) {
	okReject := AppendReject(nil, Reject{Code: CodeT01, TriggeredBy: "g.conn", Message: "m"})
	for name, b := range map[string][]byte{
		"fulfill without its fulfillment":  {13, 3, 'a', 'b', 'c'},
		"fulfill without its data field":   append([]byte{13, 32}, make([]byte, 32)...),
		"fulfill data past the envelope":   append(append([]byte{13, 34}, make([]byte, 32)...), 5, 0),
		"reject without a message":         {14, 10, 'T', '0', '1', 6, 'g', '.', 'c', 'o', 'n', 'n'},
		"reject with a bad triggeredBy":    AppendReject(nil, Reject{Code: CodeT01, TriggeredBy: "not an address"}),
		"reject cut inside":                okReject[:len(okReject)-1],
		"reject with a non-canonical size": {14, 0x81, 0x05, 'T', '0', '1', 0, 0, 0},
	} {
		if typ, err := ReadResponseType(b); err == nil {
			t.Errorf("%s: ReadResponseType = %v, want an error", name, typ)
		}
	}
	if _, err := ReadReject(AppendReject(nil, Reject{Code: CodeT01})); err != nil {
		t.Errorf("a Reject with an empty triggeredBy (as some connectors send): %v", err)
	}
}
