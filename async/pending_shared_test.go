package async

import (
	"bytes"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// sharedEdge is one edge's view of the store: a table and a store of its
// own, as another process would have.
func sharedEdge(t *testing.T, addr string) (*PendingTable, *store.Store) {
	s, err := store.New(&store.Config{Address: addr, KeyPrefix: t.Name() + ":"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destruct() })
	return new(PendingTable), s
}

// TestPendingAcrossEdges: a reply POSTed to edge b for an exchange
// waiting at edge a (the Callback-Url names a) reaches a's exchange,
// once: a second reply, at either edge, is already answered. A forged
// Fulfill relayed is refused at b and reaches a only as a bad reply.
// Once a is gone, a reply for it is unavailable (503: the peer tries
// again), not delivered.
func TestPendingAcrossEdges(t *testing.T) {
	r := redistest.Start(t)
	tableA, a := sharedEdge(t, r.Addr)
	tableB, b := sharedEdge(t, r.Addr)
	ctx := t.Context()
	deadline := time.Now().Add(time.Minute)
	fulfill := ilptest.Fulfill([]byte("bob's"))

	w := tableA.Register(ctx, a, "bob", ilptest.Condition(), deadline)
	defer tableA.Unregister(w)
	// Until a's subscription is up, b cannot hand the reply on, and says
	// so; a peer tries again.
	var got CallbackResult
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if got = tableB.Deliver(ctx, b, a.ReplyEdge(), "bob", w.ID(), fulfill); got != CallbackUnavailable || time.Since(start) > 5*time.Second {
			break
		}
	}
	if got != CallbackDelivered {
		t.Fatalf("reply at b: %s, want delivered", got)
	}
	select {
	case arrived := <-w.Reply():
		if arrived.Result != CallbackDelivered || !bytes.Equal(arrived.Body, fulfill) {
			t.Errorf("a's exchange got %s %x, want bob's Fulfill", arrived.Result, arrived.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a's exchange got nothing")
	}
	for _, c := range []struct {
		table *PendingTable
		s     *store.Store
		edge  string
		peer  string
		want  CallbackResult
	}{
		{tableB, b, a.ReplyEdge(), "bob", CallbackAlreadyAnswered},
		{tableA, a, a.ReplyEdge(), "bob", CallbackAlreadyAnswered},
		{tableB, b, a.ReplyEdge(), "carol", CallbackUnknown}, // another peer's, for bob's id
		{tableB, b, "", "bob", CallbackUnknown},              // a Callback-Url without the edge
		{tableB, b, "not-an-edge", "bob", CallbackUnknown},
		{tableB, nil, a.ReplyEdge(), "bob", CallbackUnknown}, // an edge without the store
	} {
		if got := c.table.Deliver(ctx, c.s, c.edge, c.peer, w.ID(), fulfill); got != c.want {
			t.Errorf("second reply (%s at edge %q): %s, want %s", c.peer, c.edge, got, c.want)
		}
	}

	// At the waiting edge itself, a reply is taken on the store too: b
	// finds it answered.
	w2 := tableA.Register(ctx, a, "bob", ilptest.Condition(), deadline)
	defer tableA.Unregister(w2)
	if got := tableA.Deliver(ctx, a, a.ReplyEdge(), "bob", w2.ID(), fulfill); got != CallbackDelivered {
		t.Errorf("reply at a: %s, want delivered", got)
	}
	if got := tableB.Deliver(ctx, b, a.ReplyEdge(), "bob", w2.ID(), fulfill); got != CallbackAlreadyAnswered {
		t.Errorf("the same reply at b after a took it: %s, want already answered", got)
	}

	forged := ilpdest.AppendFulfill(nil, bytes.Repeat([]byte{7}, 32), nil)
	w3 := tableA.Register(ctx, a, "bob", ilptest.Condition(), deadline)
	defer tableA.Unregister(w3)
	if got := tableB.Deliver(ctx, b, a.ReplyEdge(), "bob", w3.ID(), forged); got != CallbackBadFulfillment {
		t.Errorf("forged Fulfill at b: %s, want bad_fulfillment", got)
	}
	select {
	case arrived := <-w3.Reply():
		if arrived.Result != CallbackBadFulfillment || arrived.Body != nil {
			t.Errorf("a's exchange got %s %x, want a bad fulfillment and no body", arrived.Result, arrived.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a's exchange got nothing for the forged Fulfill")
	}

	// An exchange that ended without a reply is unknown at every edge.
	w4 := tableA.Register(ctx, a, "bob", ilptest.Condition(), deadline)
	tableA.Unregister(w4)
	if got := tableB.Deliver(ctx, b, a.ReplyEdge(), "bob", w4.ID(), fulfill); got != CallbackUnknown {
		t.Errorf("reply at b after a stopped waiting: %s, want unknown", got)
	}

	w5 := tableA.Register(ctx, a, "bob", ilptest.Condition(), deadline)
	a.Destruct() // the edge dies with w5 waiting
	if got := tableB.Deliver(ctx, b, a.ReplyEdge(), "bob", w5.ID(), fulfill); got != CallbackUnavailable {
		t.Errorf("reply at b for an edge gone: %s, want unavailable", got)
	}
}
