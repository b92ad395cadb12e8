package egress

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressOutgoingLimits: a packet over the peer's outgoing_limits is
// not sent; the connector gets the edge's Reject for that limit (F08
// with the amounts, T04 for throughput, T05 for rate), and a packet the
// peer rejects gives its amount back to the throughput budget, one it
// fulfills does not.
func TestEgressOutgoingLimits(t *testing.T) {
	answer := ilptest.Fulfill(nil)
	p := startTestPeer(t, func(w http.ResponseWriter, _ *http.Request) { w.Write(answer) })
	c := bob(p.srv.URL + "/ilp")
	c.OutgoingLimits = &handler.Limits{
		MaxPacketAmount: 150,
		Throughput:      &handler.Budget{Limit: 300, Period: caddy.Duration(time.Hour)},
		Rate:            &handler.Budget{Limit: 5, Period: caddy.Duration(time.Hour)},
	}
	e, g := testEdge(t), testEgress(t, c)
	prepare := func(amount uint64) []byte {
		return ilptest.NewPrepare(ilpdest.Prepare{Amount: amount, Destination: []byte("g.bob.x"), ExpiresAt: time.Now().Add(ttl)})
	}
	sent := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.seen)
	}
	refused := func() float64 { return testutil.ToFloat64(metricPackets.WithLabelValues("bob", "refused")) }
	before := refused()

	// Over max_packet_amount: F08 with the amount and the maximum, as
	// STREAM reads them; nothing sent, no budget spent.
	res := send(t, e, g, "/peers/bob/", prepare(151))
	res.wantReject(t, "F08")
	rej, _ := ilpdest.ReadReject(res.w.Body.Bytes())
	if len(rej.Data) != 16 || rej.Data[7] != 151 || rej.Data[15] != 150 {
		t.Errorf("F08 data %x, want amount 151 and maximum 150", rej.Data)
	}
	// 100 + 100 fulfilled spend 200 of 300; a rejected 100 is given back;
	// so 100 more passes, and then one more 100 is over (T04).
	for i, c := range []struct {
		amount uint64
		reply  []byte
		want   string
	}{
		{100, ilptest.Fulfill(nil), "fulfill"},
		{100, ilptest.Fulfill(nil), "fulfill"},
		{100, ilptest.Reject("F99", "g.bob", "no"), "reject"},
		{100, ilptest.Fulfill(nil), "fulfill"},
		{100, ilptest.Fulfill(nil), "T04"},
	} {
		answer = c.reply
		res := send(t, e, g, "/peers/bob/", prepare(c.amount))
		if c.want == "T04" {
			res.wantReject(t, "T04")
			continue
		}
		if res.err != nil || res.w.Code != http.StatusOK || string(res.w.Body.Bytes()) != string(c.reply) {
			t.Fatalf("packet %d: HTTP %d %x, %v; want bob's %s", i, res.w.Code, res.w.Body.Bytes(), res.err, c.want)
		}
	}
	if n := sent(); n != 4 {
		t.Errorf("bob got %d packets, want 4 (none over a limit)", n)
	}
	// Those five spent the rate (the T04 one too: it was asked for; the
	// F08 one was not); the next is T05, whatever its amount.
	res = send(t, e, g, "/peers/bob/", prepare(1))
	res.wantReject(t, "T05")
	if n := sent(); n != 4 {
		t.Errorf("bob got %d packets, want still 4", n)
	}
	if got := refused() - before; got != 3 {
		t.Errorf("egress_packets_total{result=refused} went up by %v, want 3", got)
	}
}
