package async

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestPending: a reply reaches only the exchange of its peer and id,
// once; a Fulfill that does not match the condition is never handed on;
// an ended exchange is unknown; each result is counted.
func TestPending(t *testing.T) {
	var p PendingTable
	count := func(peer string, r CallbackResult) float64 {
		return testutil.ToFloat64(metricCallbacks.WithLabelValues(peer, string(r)))
	}
	before := count("bob", CallbackAlreadyAnswered)
	w := p.Register(t.Context(), nil, "bob", ilptest.Condition(), time.Now().Add(time.Minute))
	id := w.ID()
	if parsed, err := ParseRequestID(string(id)); err != nil || parsed != id {
		t.Fatalf("Request-Id %q: %v", id, err)
	}
	fulfill := ilptest.Fulfill([]byte("bob's"))
	for _, c := range []struct {
		peer string
		id   RequestID
		want CallbackResult
	}{
		{"carol", id, CallbackUnknown}, // another peer's, for bob's id
		{"bob", NewRequestID(), CallbackUnknown},
		{"bob", id, CallbackDelivered},
		{"bob", id, CallbackAlreadyAnswered},
	} {
		if got := p.Deliver(t.Context(), nil, "", c.peer, c.id, fulfill); got != c.want {
			t.Errorf("Deliver(%s, %s): %s, want %s", c.peer, c.id, got, c.want)
		}
	}
	if a := <-w.Reply(); a.Result != CallbackDelivered || !bytes.Equal(a.Body, fulfill) {
		t.Errorf("got %s %x, want bob's Fulfill", a.Result, a.Body)
	}
	if got := count("bob", CallbackAlreadyAnswered) - before; got != 1 {
		t.Errorf("egress_callbacks_total{bob,already_answered} went up by %v, want 1", got)
	}
	p.Unregister(w)
	if got := p.Deliver(t.Context(), nil, "", "bob", id, fulfill); got != CallbackUnknown || p.Len() != 0 {
		t.Errorf("after Unregister: %s with %d waiting, want unknown and none", got, p.Len())
	}

	// A Reject is not checked against the condition; a forged Fulfill is
	// refused and the exchange learns only that.
	w = p.Register(t.Context(), nil, "bob", ilptest.Condition(), time.Now().Add(time.Minute))
	defer p.Unregister(w)
	forged := ilpdest.AppendFulfill(nil, bytes.Repeat([]byte{7}, 32), nil)
	if got := p.Deliver(t.Context(), nil, "", "bob", w.ID(), forged); got != CallbackBadFulfillment {
		t.Errorf("forged Fulfill: %s, want bad_fulfillment", got)
	}
	if a := <-w.Reply(); a.Result != CallbackBadFulfillment || a.Body != nil {
		t.Errorf("got %s %x, want a bad fulfillment and no body", a.Result, a.Body)
	}
	w2 := p.Register(t.Context(), nil, "bob", ilptest.Condition(), time.Now().Add(time.Minute))
	defer p.Unregister(w2)
	if got := p.Deliver(t.Context(), nil, "", "bob", w2.ID(), ilptest.Reject("F02", "g.bob", "")); got != CallbackDelivered {
		t.Errorf("Reject: %s, want delivered", got)
	}
}
