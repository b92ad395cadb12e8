package ilpdest

import (
	"bytes"
	"testing"
)

func FuzzReadPrepare(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.Vectors {
		f.Add(mustHex(f, v.Hex))
	}
	for _, m := range vf.Malformed {
		f.Add(mustHex(f, m.Hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ReadPrepare(b)
		ref, ok := refReadPrepare(b)
		if (err == nil) != ok {
			t.Fatalf("ReadPrepare err = %v, reference ok = %v", err, ok)
		}
		if ok {
			if p.Amount != ref.Amount || !p.ExpiresAt.Equal(ref.ExpiresAt) ||
				!bytes.Equal(p.ExecutionCondition, ref.ExecutionCondition) ||
				!bytes.Equal(p.Destination, ref.Destination) || !bytes.Equal(p.Data, ref.Data) {
				t.Fatalf("ReadPrepare = %+v, reference = %+v", p, ref)
			}
		}
		// Whatever the whole read accepts, the header read accepts too,
		// with the same routing fields.
		h, herr := ReadPrepareHeader(b)
		if err == nil && (herr != nil || !bytes.Equal(h.Destination, p.Destination)) {
			t.Fatalf("ReadPrepareHeader = %+v, %v after ReadPrepare accepted", h, herr)
		}
	})
}

func FuzzValidAddress(f *testing.F) {
	for _, a := range addressCases {
		f.Add(a.addr)
	}
	f.Fuzz(func(t *testing.T, a string) {
		if got, want := ValidAddress(a), refValidAddress(a); got != want {
			t.Fatalf("ValidAddress(%q) = %v, reference %v", a, got, want)
		}
		if ValidAddress(a) != ValidAddress([]byte(a)) {
			t.Fatalf("string and []byte disagree on %q", a)
		}
	})
}

// FuzzReadResponse: whatever ReadResponseType accepts, ReadFulfill or
// ReadReject accepts too, and its fields encode into a packet that reads
// back to the same fields. (Bytes after the last field inside the
// envelope are ignored, as RFC 30 asks, so the bytes may differ.)
func FuzzReadResponse(f *testing.F) {
	for _, v := range loadVectors(f).Vectors {
		f.Add(mustHex(f, v.Hex))
	}
	f.Add([]byte{13, 3, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := ReadResponseType(b)
		if err != nil {
			return
		}
		switch typ {
		case TypeFulfill:
			ful, err := ReadFulfill(b)
			if err != nil {
				t.Fatalf("ReadResponseType accepted a Fulfill that ReadFulfill refuses: %v", err)
			}
			again, err := ReadFulfill(AppendFulfill(nil, ful.Fulfillment, ful.Data))
			if err != nil || !bytes.Equal(again.Fulfillment, ful.Fulfillment) || !bytes.Equal(again.Data, ful.Data) {
				t.Fatalf("%+v encodes and reads back as %+v, %v", ful, again, err)
			}
		case TypeReject:
			r, err := ReadReject(b)
			if err != nil {
				t.Fatalf("ReadResponseType accepted a Reject that ReadReject refuses: %v", err)
			}
			again, err := ReadReject(AppendReject(nil, r))
			if err != nil || again.Code != r.Code || again.TriggeredBy != r.TriggeredBy ||
				again.Message != r.Message || !bytes.Equal(again.Data, r.Data) {
				t.Fatalf("%+v encodes and reads back as %+v, %v", r, again, err)
			}
		}
	})
}
