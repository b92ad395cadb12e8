package async

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

const idA, idB RequestID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "2b4e28ba-2fa1-41d2-883f-0016d3cca427"

func testClaims(t *testing.T, c *Claims) {
	t.Helper()
	ctx := t.Context()
	until := time.Now().Add(time.Minute)
	steps := []struct {
		peer   string
		id     RequestID
		packet string
		want   ClaimResult
	}{
		{"alice", idA, "p1", New},
		{"alice", idA, "p1", Replay},
		{"alice", idA, "p2", Conflict},
		{"bob", idA, "p2", New}, // ids are per peer
		{"alice", idB, "p1", New},
	}
	for i, s := range steps {
		if got := c.Claim(ctx, s.peer, s.id, []byte(s.packet), until); got != s.want {
			t.Errorf("step %d (%s %s %s): %v, want %v", i, s.peer, s.id, s.packet, got, s.want)
		}
	}
	// A claim ends with its exchange.
	if got := c.Claim(ctx, "carol", idA, []byte("p"), time.Now().Add(50*time.Millisecond)); got != New {
		t.Fatal(got)
	}
	time.Sleep(100 * time.Millisecond)
	if got := c.Claim(ctx, "carol", idA, []byte("other"), until); got != New {
		t.Errorf("after the first exchange's time: %v, want new", got)
	}
}

func TestClaimsInProcess(t *testing.T) { testClaims(t, &Claims{}) }

func TestClaimsOnTheSharedStore(t *testing.T) {
	r := redistest.Start(t)
	edge := func() *store.Store {
		s, err := store.New(&store.Config{Address: r.Addr, KeyPrefix: t.Name() + ":"}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Destruct() })
		return s
	}
	a, b := &Claims{Store: edge()}, &Claims{Store: edge()}
	testClaims(t, a)
	// Another edge sees the first's claims: a replay through it is not
	// forwarded again.
	if got := b.Claim(t.Context(), "alice", idA, []byte("p1"), time.Now().Add(time.Minute)); got != Replay {
		t.Errorf("through another edge: %v, want replay", got)
	}
	if a.Len() != 0 {
		t.Errorf("%d claims held in process with the store answering", a.Len())
	}
	// Without Redis, the edge claims in process.
	r.Kill()
	if got := b.Claim(t.Context(), "alice", idB, []byte("p1"), time.Now().Add(time.Minute)); got != New {
		t.Errorf("with Redis down: %v, want new (in process)", got)
	}
	if got := b.Claim(t.Context(), "alice", idB, []byte("p1"), time.Now().Add(time.Minute)); got != Replay {
		t.Errorf("with Redis down, again: %v, want replay", got)
	}
}

func TestClaimsInProcessAreForgotten(t *testing.T) {
	c := &Claims{}
	for i := range 1000 {
		c.Claim(t.Context(), "alice", RequestID(fmt.Sprint(i)), []byte("p"), time.Now().Add(10*time.Millisecond))
	}
	time.Sleep(20 * time.Millisecond)
	c.Claim(t.Context(), "alice", idA, []byte("p"), time.Now().Add(time.Minute))
	if n := c.Len(); n != 1 {
		t.Errorf("%d claims held after 1000 expired, want 1", n)
	}
}

func TestInFlightBounds(t *testing.T) {
	f := &InFlight{PerPeer: 2, Total: 3}
	if !f.Acquire("alice") || !f.Acquire("alice") || f.Acquire("alice") {
		t.Fatal("alice: want two places, not three")
	}
	if !f.Acquire("bob") || f.Acquire("bob") {
		t.Fatal("bob: want the one place left in all")
	}
	f.Release("alice")
	if !f.Acquire("bob") {
		t.Fatal("bob: a place was released")
	}
	for _, p := range []string{"alice", "bob", "bob"} {
		f.Release(p)
	}
	if f.Count() != 0 || !f.Wait(make(chan struct{})) {
		t.Errorf("%d in flight after every release", f.Count())
	}
}
