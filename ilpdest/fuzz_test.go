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
