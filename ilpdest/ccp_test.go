package ilpdest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ccpVectorFile is testdata/ccp-vectors.json, which testdata/ccp-vectors.js
// makes with ilp-protocol-ccp 1.2.3: whole Prepares in hex and the fields
// they were serialized from, named as ilp-protocol-ccp names them.
type ccpVectorFile struct {
	RouteControl []ccpVector[jsRouteControl] `json:"routeControl"`
	RouteUpdate  []ccpVector[jsRouteUpdate]  `json:"routeUpdate"`
}

type ccpVector[F any] struct {
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expiresAt"`
	Hex       string    `json:"hex"`
	Fields    F         `json:"fields"`
}

type jsRouteControl struct {
	Mode                    uint8
	LastKnownRoutingTableID string
	LastKnownEpoch          uint32
	Features                []string
}

type jsRouteUpdate struct {
	RoutingTableID                                                string
	CurrentEpochIndex, FromEpochIndex, ToEpochIndex, HoldDownTime uint32
	Speaker                                                       string
	NewRoutes                                                     []struct {
		Prefix string
		Path   []string
		Auth   string // hex
		Props  []struct {
			jsPropFlags
			ID      uint16
			Value   string      // hex
			Decoded jsPropFlags // as ilp-protocol-ccp reads them back
		}
	}
	WithdrawnRoutes []string
}

type jsPropFlags struct{ IsOptional, IsTransitive, IsPartial, IsUtf8 bool }

func loadCCPVectors(t testing.TB) ccpVectorFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/ccp-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf ccpVectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.RouteControl) == 0 || len(vf.RouteUpdate) == 0 {
		t.Fatal("CCP vector file has no vectors")
	}
	return vf
}

func uuid(t testing.TB, s string) (id [16]byte) {
	t.Helper()
	if b := mustHex(t, strings.ReplaceAll(s, "-", "")); copy(id[:], b) != len(b) || len(b) != len(id) {
		t.Fatalf("UUID %q is not 16 bytes", s)
	}
	return id
}

// orNil is s, or nil if it is empty, as the readers return empty
// sequences and values.
func orNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func (c jsRouteControl) control(t testing.TB) RouteControl {
	return RouteControl{Mode: c.Mode, LastKnownRoutingTableID: uuid(t, c.LastKnownRoutingTableID), LastKnownEpoch: c.LastKnownEpoch, Features: orNil(c.Features)}
}

// update is the RouteUpdate the vector was serialized from, with its
// props' flags as given to the serializer, or as decoded from its bytes.
func (u jsRouteUpdate) update(t testing.TB, decoded bool) RouteUpdate {
	out := RouteUpdate{
		RoutingTableID:    uuid(t, u.RoutingTableID),
		CurrentEpochIndex: u.CurrentEpochIndex,
		FromEpochIndex:    u.FromEpochIndex,
		ToEpochIndex:      u.ToEpochIndex,
		HoldDownTime:      u.HoldDownTime,
		Speaker:           u.Speaker,
		NewRoutes:         sized[Route](len(u.NewRoutes)),
		WithdrawnRoutes:   orNil(u.WithdrawnRoutes),
	}
	for i, r := range u.NewRoutes {
		rt := Route{Prefix: r.Prefix, Path: orNil(r.Path), Props: sized[RouteProp](len(r.Props))}
		if copy(rt.Auth[:], mustHex(t, r.Auth)) != len(rt.Auth) {
			t.Fatalf("auth %q is short", r.Auth)
		}
		for j, p := range r.Props {
			f := p.jsPropFlags
			if decoded {
				f = p.Decoded
			}
			rt.Props[j] = RouteProp{Optional: f.IsOptional, Transitive: f.IsTransitive, Partial: f.IsPartial, UTF8: f.IsUtf8, ID: p.ID, Value: orNil(mustHex(t, p.Value))}
		}
		out.NewRoutes[i] = rt
	}
	return out
}

// ccpPrepare checks that raw is a CCP request Prepare as ilp-protocol-ccp
// builds it, and returns its data.
func ccpPrepare(t testing.TB, raw []byte, dest string, expiresAt time.Time) []byte {
	t.Helper()
	p, err := ReadPrepare(raw)
	if err != nil {
		t.Fatalf("ReadPrepare: %v", err)
	}
	if p.Amount != 0 || string(p.Destination) != dest || !bytes.Equal(p.ExecutionCondition, PeerProtocolCondition) || !p.ExpiresAt.Equal(expiresAt) {
		t.Fatalf("Prepare amount %d, destination %q, condition %x, expiresAt %v; want 0, %q, the peer protocol's, %v",
			p.Amount, p.Destination, p.ExecutionCondition, p.ExpiresAt, dest, expiresAt)
	}
	return p.Data
}

// ccpRequest is the Prepare that carries a CCP request's data.
func ccpRequest(dest string, expiresAt time.Time, data []byte) []byte {
	return AppendPrepare(nil, Prepare{ExpiresAt: expiresAt, ExecutionCondition: PeerProtocolCondition, Destination: []byte(dest), Data: data})
}

func TestRouteControlVectors(t *testing.T) {
	for _, v := range loadCCPVectors(t).RouteControl {
		t.Run(v.Name, func(t *testing.T) {
			raw := mustHex(t, v.Hex)
			want := v.Fields.control(t)
			got, err := ReadRouteControl(ccpPrepare(t, raw, PeerRouteControl, v.ExpiresAt))
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ReadRouteControl = %+v, %v\nwant %+v", got, err, want)
			}
			if enc := ccpRequest(PeerRouteControl, v.ExpiresAt, AppendRouteControl(nil, want)); !bytes.Equal(enc, raw) {
				t.Fatalf("AppendRouteControl =\n %x\nwant\n %x", enc, raw)
			}
		})
	}
}

func TestRouteUpdateVectors(t *testing.T) {
	for _, v := range loadCCPVectors(t).RouteUpdate {
		t.Run(v.Name, func(t *testing.T) {
			raw := mustHex(t, v.Hex)
			want := v.Fields.update(t, true)
			got, err := ReadRouteUpdate(ccpPrepare(t, raw, PeerRouteUpdate, v.ExpiresAt))
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ReadRouteUpdate = %+v, %v\nwant %+v", got, err, want)
			}
			// The flags as given, which the encoding rewrites as
			// ilp-protocol-ccp does.
			if enc := ccpRequest(PeerRouteUpdate, v.ExpiresAt, AppendRouteUpdate(nil, v.Fields.update(t, false))); !bytes.Equal(enc, raw) {
				t.Fatalf("AppendRouteUpdate =\n %x\nwant\n %x", enc, raw)
			}
		})
	}
}

// ccpVectorData returns the data of every vector, route controls first.
func ccpVectorData(t testing.TB) (control, update [][]byte) {
	vf := loadCCPVectors(t)
	for _, v := range vf.RouteControl {
		control = append(control, ccpPrepare(t, mustHex(t, v.Hex), PeerRouteControl, v.ExpiresAt))
	}
	for _, v := range vf.RouteUpdate {
		update = append(update, ccpPrepare(t, mustHex(t, v.Hex), PeerRouteUpdate, v.ExpiresAt))
	}
	return control, update
}

// Every prefix of a request is truncated, and a byte more is trailing.
func TestCCPTruncatedAndTrailing(t *testing.T) {
	control, update := ccpVectorData(t)
	check := func(name string, read func([]byte) error, data []byte) {
		t.Helper()
		for i := range data {
			err := read(data[:i])
			var pe *ParseError
			if !errors.Is(err, ErrTruncated) || !errors.As(err, &pe) {
				t.Fatalf("%s of the first %d of %d bytes: %v, want a truncation", name, i, len(data), err)
			}
		}
		if err := read(append(data[:len(data):len(data)], 0)); !errors.Is(err, ErrTrailing) {
			t.Fatalf("%s with a byte more: %v, want trailing bytes", name, err)
		}
	}
	for _, d := range control {
		check("ReadRouteControl", readControl, d)
	}
	for _, d := range update {
		check("ReadRouteUpdate", readUpdate, d)
	}
}

func readControl(b []byte) error { _, err := ReadRouteControl(b); return err }
func readUpdate(b []byte) error  { _, err := ReadRouteUpdate(b); return err }

// updateHead is a route update's data up to its new routes' count.
func updateHead() []byte {
	return AppendRouteUpdate(nil, RouteUpdate{Speaker: "g.a"})[:16+4*4+4]
}

func TestCCPMalformed(t *testing.T) {
	control := AppendRouteControl(nil, RouteControl{})
	for _, c := range []struct {
		name, field string
		read        func([]byte) error
		data        []byte
		want        error
	}{
		{"count with a leading zero", "features", readControl, append(control[:21:21], 2, 0, 0), ErrLengthPrefix},
		{"empty count", "features", readControl, append(control[:21:21], 0), ErrLengthPrefix},
		{"2^32 features in 4 bytes", "features", readControl, append(control[:21:21], 5, 1, 0, 0, 0, 0, 'a', 'b', 'c', 'd'), ErrTruncated},
		{"a 9-byte count", "features", readControl, append(control[:21:21], 9, 1, 0, 0, 0, 0, 0, 0, 0, 0), ErrTruncated},
		{"2^32 routes", "newRoutes", readUpdate, append(updateHead(), 5, 1, 0, 0, 0, 0, 1, 0), ErrTruncated},
		{"2 routes in 73 bytes", "newRoutes", readUpdate, append(append(updateHead(), 1, 2), make([]byte, 2*minRouteSize-1)...), ErrTruncated},
		{"speaker longer than the data", "speaker", readUpdate, append(updateHead()[:32:32], 9, 'g'), ErrTruncated},
		{"indefinite speaker length", "speaker", readUpdate, append(updateHead()[:32:32], 0x80), ErrLengthPrefix},
	} {
		err := c.read(c.data)
		var pe *ParseError
		if !errors.Is(err, c.want) || !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: %v; want %v in field %s", c.name, err, c.want, c.field)
		}
	}
	// A count is checked before anything is allocated for it.
	huge := append(updateHead(), 5, 1, 0, 0, 0, 0, 1, 0)
	if n := testing.AllocsPerRun(10, func() { _, _ = ReadRouteUpdate(huge) }); n > 2 {
		t.Errorf("reading a count of 2^32 routes: %v allocations", n)
	}
}

// The flag bytes ilp-protocol-ccp writes, from its serializer: optional
// 0x80, transitive 0x40 (always on a well-known prop), partial 0x20 (only
// on an optional transitive one), UTF-8 0x10.
var writtenPropFlags = map[byte]bool{0x40: true, 0x50: true, 0x80: true, 0x90: true, 0xc0: true, 0xd0: true, 0xe0: true, 0xf0: true}

func TestRoutePropFlags(t *testing.T) {
	u := RouteUpdate{NewRoutes: []Route{{Prefix: "g.a", Props: []RouteProp{{ID: 7, Value: []byte("v")}}}}}
	data := AppendRouteUpdate(nil, u)
	at := bytes.Index(data, []byte{0, 7, 1, 'v'}) - 1
	for f := range 256 {
		data[at] = byte(f)
		got, err := ReadRouteUpdate(data)
		if !writtenPropFlags[byte(f)] {
			var pe *ParseError
			if !errors.Is(err, ErrPropFlags) || !errors.As(err, &pe) || pe.Offset != at {
				t.Errorf("flags %#02x: %v; want invalid flags at offset %d", f, err, at)
			}
			continue
		}
		if err != nil {
			t.Fatalf("flags %#02x: %v", f, err)
		}
		p := got.NewRoutes[0].Props[0]
		if p.Optional != (f&0x80 != 0) || p.Transitive != (f&0x40 != 0) || p.Partial != (f&0x20 != 0) || p.UTF8 != (f&0x10 != 0) {
			t.Errorf("flags %#02x read as %+v", f, p)
		}
		if enc := AppendRouteUpdate(nil, got); !bytes.Equal(enc, data) {
			t.Errorf("flags %#02x append as %#02x", f, enc[at])
		}
	}
}

// Zero and random requests (with props' flags as they are written) read
// back as themselves, and appending keeps what dst held.
func TestCCPRoundTrip(t *testing.T) {
	if c, err := ReadRouteControl(AppendRouteControl(nil, RouteControl{})); err != nil || !reflect.DeepEqual(c, RouteControl{}) {
		t.Fatalf("zero RouteControl reads back as %+v, %v", c, err)
	}
	if u, err := ReadRouteUpdate(AppendRouteUpdate(nil, RouteUpdate{})); err != nil || !reflect.DeepEqual(u, RouteUpdate{}) {
		t.Fatalf("zero RouteUpdate reads back as %+v, %v", u, err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	flags := []RouteProp{{Transitive: true}, {Optional: true}, {Optional: true, Transitive: true}, {Optional: true, Transitive: true, Partial: true}}
	text := func() string {
		b := make([]byte, []int{0, 1, 5, 130, 300}[r.IntN(5)])
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return string(b)
	}
	texts := func() []string {
		s := sized[string]([]int{0, 1, 3, 260}[r.IntN(4)])
		for i := range s {
			s[i] = text()
		}
		return s
	}
	for range 300 {
		c := RouteControl{Mode: uint8(r.Uint32()), LastKnownEpoch: r.Uint32(), Features: texts()}
		copy(c.LastKnownRoutingTableID[:], text())
		enc := AppendRouteControl([]byte("xy"), c)
		got, err := ReadRouteControl(enc[2:])
		if err != nil || !reflect.DeepEqual(got, c) || string(enc[:2]) != "xy" {
			t.Fatalf("RouteControl %+v reads back as %+v, %v", c, got, err)
		}

		u := RouteUpdate{CurrentEpochIndex: r.Uint32(), FromEpochIndex: r.Uint32(), ToEpochIndex: r.Uint32(), HoldDownTime: r.Uint32(),
			Speaker: text(), NewRoutes: sized[Route](r.IntN(4)), WithdrawnRoutes: texts()}
		copy(u.RoutingTableID[:], text())
		for i := range u.NewRoutes {
			rt := Route{Prefix: text(), Path: texts(), Props: sized[RouteProp](r.IntN(4))}
			copy(rt.Auth[:], text())
			for j := range rt.Props {
				p := flags[r.IntN(len(flags))]
				p.UTF8, p.ID, p.Value = r.IntN(2) == 1, uint16(r.Uint32()), orNil([]byte(text()))
				rt.Props[j] = p
			}
			u.NewRoutes[i] = rt
		}
		enc = AppendRouteUpdate([]byte("xy"), u)
		gotU, err := ReadRouteUpdate(enc[2:])
		if err != nil || !reflect.DeepEqual(gotU, u) || string(enc[:2]) != "xy" {
			t.Fatalf("RouteUpdate %+v reads back as %+v, %v", u, gotU, err)
		}
	}
}

// FuzzReadRouteControl: no input panics; an error says where; what reads
// appends back to the same bytes.
func FuzzReadRouteControl(f *testing.F) {
	control, update := ccpVectorData(f)
	for _, d := range append(control, update...) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ReadRouteControl(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if enc := AppendRouteControl(nil, c); !bytes.Equal(enc, b) {
			t.Fatalf("%x reads as %+v, which appends as %x", b, c, enc)
		}
	})
}

// FuzzReadRouteUpdate: as FuzzReadRouteControl, for route updates.
func FuzzReadRouteUpdate(f *testing.F) {
	control, update := ccpVectorData(f)
	for _, d := range append(update, control...) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ReadRouteUpdate(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if enc := AppendRouteUpdate(nil, u); !bytes.Equal(enc, b) {
			t.Fatalf("%x reads as %+v, which appends as %x", b, u, enc)
		}
	})
}
