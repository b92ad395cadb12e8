package async

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestParseRequestID(t *testing.T) {
	for _, s := range []string{
		"1b4e28ba-2fa1-41d2-883f-0016d3cca427",
		"1B4E28BA-2FA1-41D2-B83F-0016D3CCA427",
		uuid.NewString(),
	} {
		id, err := ParseRequestID(s)
		if err != nil || string(id) != strings.ToLower(s) {
			t.Errorf("%q: %q, %v", s, id, err)
		}
	}
	for _, s := range []string{
		"",
		"1b4e28ba-2fa1-11d2-883f-0016d3cca427",  // version 1
		"1b4e28ba-2fa1-41d2-c83f-0016d3cca427",  // variant 110
		"1b4e28ba-2fa1-41d2-883f-0016d3cca42",   // short
		"1b4e28ba-2fa1-41d2-883f-0016d3cca4277", // long
		"1b4e28ba2fa141d2883f0016d3cca427",      // no hyphens
		"{1b4e28ba-2fa1-41d2-883f-0016d3cca427}",
		"1b4e28ba-2fa1-41d2-883f_0016d3cca427",
		"1b4e28ba-2fa1-41d2-883f-0016d3cca42g",
		"urn:uuid:1b4e28ba-2fa1-41d2-883f-0016d3",
	} {
		if id, err := ParseRequestID(s); err == nil {
			t.Errorf("%q accepted as %q", s, id)
		}
	}
}

// FuzzParseRequestID: whatever it accepts, uuid.Parse reads as a version
// 4, RFC 4122 variant UUID with the same text, lower-cased.
func FuzzParseRequestID(f *testing.F) {
	f.Add("1b4e28ba-2fa1-41d2-883f-0016d3cca427")
	f.Add("1B4E28BA-2FA1-41D2-B83F-0016D3CCA427")
	f.Add("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRequestID(s)
		if err != nil {
			return
		}
		u, uerr := uuid.Parse(s)
		if uerr != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != string(id) {
			t.Fatalf("%q accepted as %q; uuid.Parse: %v, %v", s, id, u, uerr)
		}
	})
}
