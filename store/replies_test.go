package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// relayed collects what ListenReplies hands on.
type relayed struct {
	mu  sync.Mutex
	got []string // peer id body
}

func (r *relayed) deliver(peer, id string, body []byte) {
	r.mu.Lock()
	r.got = append(r.got, peer+" "+id+" "+string(body))
	r.mu.Unlock()
}

func (r *relayed) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

const (
	replyID  = "0b4c6a4e-5a7d-4c1e-9f3a-2d8e6b1c7a90"
	replyID2 = "1b4c6a4e-5a7d-4c1e-9f3a-2d8e6b1c7a90"
)

// testReplies is the life of a reply that lands on edge b for an
// exchange waiting at edge a, on the store the two share.
func testReplies(t *testing.T, a, b *Store) {
	ctx := t.Context()
	condition := bytes.Repeat([]byte{0xc0}, 32)
	if err := a.ExpectReply(ctx, "bob", replyID, condition, time.Minute); err != nil {
		t.Fatal(err)
	}
	// a does not listen yet: nothing is published, nothing marked.
	if res, _, err := b.RelayReply(ctx, a.ReplyEdge(), "bob", replyID, []byte("early")); err != nil || res != ReplyNoListener {
		t.Fatalf("before a listens: %v, %v; want no listener", res, err)
	}
	var at relayed
	a.ListenReplies(at.deliver)
	var res ReplyResult
	var got []byte
	waitFor(t, 5*time.Second, "a's subscription is up", func() bool {
		var err error
		res, got, err = b.RelayReply(ctx, a.ReplyEdge(), "bob", replyID, []byte("fulfill"))
		if err != nil {
			t.Fatal(err)
		}
		return res != ReplyNoListener
	})
	if res != ReplyTaken || !bytes.Equal(got, condition) {
		t.Fatalf("relay: %v with condition %x; want taken with %x", res, got, condition)
	}
	waitFor(t, 2*time.Second, "a gets the relayed reply", func() bool { return len(at.list()) > 0 })
	if l := at.list(); len(l) != 1 || l[0] != "bob "+replyID+" fulfill" {
		t.Errorf("a got %q, want bob's one reply", l)
	}

	// A second reply, at either edge, finds it answered; another peer's,
	// another id, or an edge that is nobody's, finds nothing.
	if res, _, err := b.RelayReply(ctx, a.ReplyEdge(), "bob", replyID, []byte("again")); err != nil || res != ReplyAnswered {
		t.Errorf("second relay: %v, %v; want answered", res, err)
	}
	if res, err := a.TakeReply(ctx, "bob", replyID); err != nil || res != ReplyAnswered {
		t.Errorf("take after the relay: %v, %v; want answered", res, err)
	}
	for _, c := range []struct{ edge, peer, id string }{
		{a.ReplyEdge(), "carol", replyID},
		{a.ReplyEdge(), "bob", replyID2},
		{b.ReplyEdge(), "bob", replyID},
	} {
		if res, _, err := b.RelayReply(ctx, c.edge, c.peer, c.id, []byte("x")); err != nil || res != ReplyUnknown {
			t.Errorf("relay %v: %v, %v; want unknown", c, res, err)
		}
	}
	for _, edge := range []string{"", "}" + a.ReplyEdge()[1:], a.ReplyEdge() + "0"} {
		if _, _, err := b.RelayReply(ctx, edge, "bob", replyID, []byte("x")); !errors.Is(err, ErrBadReplyEdge) {
			t.Errorf("relay to edge %q: %v, want ErrBadReplyEdge", edge, err)
		}
	}

	// A reply to the waiting edge itself is taken there once; an exchange
	// forgotten, or expired, is unknown.
	if err := a.ExpectReply(ctx, "bob", replyID2, condition, time.Minute); err != nil {
		t.Fatal(err)
	}
	if res, err := a.TakeReply(ctx, "bob", replyID2); err != nil || res != ReplyTaken {
		t.Errorf("take: %v, %v; want taken", res, err)
	}
	if res, _, err := b.RelayReply(ctx, a.ReplyEdge(), "bob", replyID2, []byte("x")); err != nil || res != ReplyAnswered {
		t.Errorf("relay after a took it: %v, %v; want answered", res, err)
	}
	if err := a.ForgetReply(ctx, "bob", replyID2); err != nil {
		t.Fatal(err)
	}
	if res, err := a.TakeReply(ctx, "bob", replyID2); err != nil || res != ReplyUnknown {
		t.Errorf("take after forget: %v, %v; want unknown", res, err)
	}
	if err := a.ExpectReply(ctx, "carol", replyID, condition, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if res, _, err := b.RelayReply(ctx, a.ReplyEdge(), "carol", replyID, []byte("x")); err != nil || res != ReplyUnknown {
		t.Errorf("relay after the exchange expired: %v, %v; want unknown", res, err)
	}
	if l := at.list(); len(l) != 1 {
		t.Errorf("a got %d relayed replies, want 1: %q", len(l), l)
	}

	// a gone: nobody listens, and the reply stays for a peer's next try.
	if err := a.ExpectReply(ctx, "bob", replyID2, condition, time.Minute); err != nil {
		t.Fatal(err)
	}
	a.Destruct()
	for range 2 {
		if res, _, err := b.RelayReply(ctx, a.ReplyEdge(), "bob", replyID2, []byte("x")); err != nil || res != ReplyNoListener {
			t.Errorf("relay to an edge gone: %v, %v; want no listener", res, err)
		}
	}
}

// TestRepliesRelayed: a reply landing on another edge reaches the
// waiting one once, through Redis; a second is answered as such at
// every edge; an edge that no longer listens gets nothing.
func TestRepliesRelayed(t *testing.T) {
	r := redistest.Start(t)
	testReplies(t, edge(t, Config{Address: r.Addr}), edge(t, Config{Address: r.Addr}))
}

// TestRepliesRelayedOnCluster: the same on a Redis Cluster, where the
// exchange's key and its edge's channel share a slot (SPUBLISH counts
// the listeners on that slot's node exactly), and the waiting edge's
// slot is on another node than the one the relaying edge first asks.
func TestRepliesRelayedOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	a := edge(t, Config{Addresses: cl.Addrs})
	b := edge(t, Config{Addresses: cl.Addrs})
	if k, c := redistest.SlotOf(a.replyKey(a.ReplyEdge(), "bob", replyID)), redistest.SlotOf(a.replyChannel(a.ReplyEdge())); k != c {
		t.Fatalf("an exchange's key is in slot %d, its edge's channel in %d", k, c)
	}
	testReplies(t, a, b)
}

// TestRelayedEncoding: what one edge publishes, the other reads back;
// a truncated message is an error, not a panic.
func TestRelayedEncoding(t *testing.T) {
	m := string(encodeRelayed("bob", replyID, []byte{0, 1, 2}))
	peer, id, body, err := decodeRelayed(m)
	if err != nil || peer != "bob" || id != replyID || !bytes.Equal(body, []byte{0, 1, 2}) {
		t.Fatalf("decoded %q %q %x, %v", peer, id, body, err)
	}
	for n := range len(m) - 3 {
		if _, _, _, err := decodeRelayed(m[:n]); err == nil {
			t.Errorf("%d of %d bytes decoded", n, len(m))
		}
	}
}

// BenchmarkRelayReply: what relaying one reply costs the edge it landed
// on, a round trip to Redis with the waiting edge listening (the waiting
// edge's ExpectReply is outside the timing).
func BenchmarkRelayReply(b *testing.B) {
	r := redistest.Start(b)
	c := Config{Address: r.Addr, KeyPrefix: b.Name() + ":"}
	a, err := New(&c, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Destruct()
	s, err := New(&c, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destruct()
	a.ListenReplies(func(string, string, []byte) {})
	ctx := b.Context()
	condition, body := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 100)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		if err := a.ExpectReply(ctx, "bob", ids[i], condition, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) { // a's subscription up
		if n, _ := s.client.PubSubNumSub(ctx, a.replyChannel(a.ReplyEdge())).Result(); n[a.replyChannel(a.ReplyEdge())] > 0 {
			break
		}
		if time.Since(start) > 5*time.Second {
			b.Fatal("a does not listen")
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if res, _, err := s.RelayReply(ctx, a.ReplyEdge(), "bob", ids[i], body); err != nil || res != ReplyTaken {
			b.Fatalf("relay: %v, %v", res, err)
		}
	}
}

// FuzzDecodeRelayed: any message decodes to a peer, a 36-byte id and a
// body that encode back to it, or to an error; never a panic.
func FuzzDecodeRelayed(f *testing.F) {
	f.Add(string(encodeRelayed("bob", replyID, []byte{0x0d, 1, 2})))
	f.Add("")
	f.Add("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
	f.Fuzz(func(t *testing.T, m string) {
		peer, id, body, err := decodeRelayed(m)
		if err != nil {
			return
		}
		if len(id) != relayedIDLen {
			t.Fatalf("id %q of %d bytes", id, len(id))
		}
		if again := string(encodeRelayed(peer, id, body)); again != m {
			// A uvarint may be written longer than needed; the parts
			// must still be the same.
			p2, id2, b2, err := decodeRelayed(again)
			if err != nil || p2 != peer || id2 != id || !bytes.Equal(b2, body) {
				t.Fatalf("%q decoded to %q %q %x, which encode to %q", m, peer, id, body, again)
			}
		}
	})
}
