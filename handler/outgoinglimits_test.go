package handler

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestOutgoingLimitsCaddyfile: outgoing_limits is a block of the limit
// lines, kept apart from the peer's own limits; a bad one points at its
// line.
func TestOutgoingLimitsCaddyfile(t *testing.T) {
	e := new(Edge)
	err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`ilp_edge {
		address g.edge
		peer bob {
			token t
			rate 9 per 1s
			outgoing_limits {
				max_packet_amount 500
				throughput 1000 per 1m burst 2000
			}
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	p := e.Peers[0]
	o := p.OutgoingLimits
	if o == nil || o.MaxPacketAmount != 500 || o.Throughput == nil || o.Throughput.Limit != 1000 ||
		time.Duration(o.Throughput.Period) != time.Minute || o.Throughput.Burst != 2000 || o.Rate != nil {
		t.Errorf("outgoing_limits %+v", o)
	}
	if p.Limits == nil || p.Limits.Rate == nil || p.Limits.Rate.Limit != 9 || p.Limits.Throughput != nil {
		t.Errorf("the peer's own limits %+v", p.Limits)
	}
	for _, c := range []struct{ body, want string }{
		{"outgoing_limits {\n}", "needs max_packet_amount, rate or throughput"},
		{"outgoing_limits {\n ildcp\n}", `unrecognized option "ildcp"`},
		{"outgoing_limits {\n rate 5\n}", "rate takes <limit> per <duration>"},
		{"outgoing_limits x {\n rate 5 per 1s\n}", "wrong argument count"},
		{"outgoing_limits {\n rate 5 per 1s\n}\noutgoing_limits {\n rate 5 per 1s\n}", "given twice"},
	} {
		err := new(Edge).UnmarshalCaddyfile(caddyfile.NewTestDispenser("ilp_edge {\n address g.edge\n peer bob {\n token t\n" + c.body + "\n}\n}"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.body, err, c.want)
		}
	}
}
