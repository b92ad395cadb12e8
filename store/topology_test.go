package store

import (
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// TestSentinelFailoverUnderLoad: an edge on a Sentinel-managed master
// leases every 5 ms while the master is SIGKILLed. Each lease that fails
// is one packet on the fallback (allow: its share in process; nothing is
// refused or lost); the edge finds the new master by itself, and the
// time on the fallback is the failover's (reported).
func TestSentinelFailoverUnderLoad(t *testing.T) {
	sen := redistest.StartSentinel(t)
	s := edge(t, Config{Addresses: sen.Sentinels, MasterName: sen.MasterName, Timeout: caddy.Duration(DefaultTimeout)})
	ctx := t.Context()
	if err := lease(ctx, s, "alice"); err != nil {
		t.Fatal(err)
	}
	old := sen.Master()
	stop := make(chan struct{})
	type result struct {
		failed          int
		firstFail, back time.Time
		leases, asked   int
	}
	out := make(chan result)
	go func() {
		var r result
		for {
			select {
			case <-stop:
				out <- r
				return
			case <-time.After(5 * time.Millisecond):
			}
			r.leases++
			if !s.Asking(time.Now()) {
				r.failed++ // on the fallback without asking
				continue
			}
			r.asked++
			if err := lease(ctx, s, "alice"); err != nil {
				if r.firstFail.IsZero() {
					r.firstFail = time.Now()
				}
				r.failed++
				r.back = time.Time{}
			} else if !r.firstFail.IsZero() && r.back.IsZero() {
				r.back = time.Now()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	sen.KillMaster()
	failover := sen.WaitFailover(t, old, 30*time.Second)
	time.Sleep(3 * time.Second) // the edge's next asks reach the new master
	close(stop)
	r := <-out
	if r.firstFail.IsZero() {
		t.Fatal("no lease failed while the master was killed")
	}
	if r.back.IsZero() {
		t.Fatalf("leases did not come back after the failover (%d of %d on the fallback)", r.failed, r.leases)
	}
	if err := lease(ctx, s, "alice"); err != nil {
		t.Fatalf("after the failover: %v", err)
	}
	t.Logf("master killed: sentinels failed over in %v; the edge was on the fallback for %v (%d of %d packets, none refused), then on the new master %s",
		failover.Round(time.Millisecond), r.back.Sub(r.firstFail).Round(time.Millisecond), r.failed, r.leases, sen.Master())
}

// TestClusterKeepsLeasesAndTables: on a Redis Cluster, leases and a
// peer's table (its lock and value, one hash slot) work as on one
// server, and still do after the table's and the budget's slots move to
// another node.
func TestClusterKeepsLeasesAndTables(t *testing.T) {
	cl := redistest.StartCluster(t)
	a := edge(t, Config{Addresses: cl.Addrs})
	b := edge(t, Config{Addresses: cl.Addrs})
	ctx := t.Context()
	keys := a.tableKeys("alice")
	if redistest.SlotOf(keys[0]) != redistest.SlotOf(keys[1]) {
		t.Fatalf("the lock and the table of one peer are in slots %d and %d", redistest.SlotOf(keys[0]), redistest.SlotOf(keys[1]))
	}
	save := func(s *Store, v string) {
		t.Helper()
		l, _, err := s.LockTable(ctx, "alice", time.Minute, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Save(ctx, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(s *Store) string {
		t.Helper()
		l, saved, err := s.LockTable(ctx, "alice", time.Minute, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		l.Save(ctx, nil)
		return string(saved)
	}
	save(a, "one")
	if got := read(b); got != "one" {
		t.Fatalf("the other edge read %q", got)
	}
	if err := lease(ctx, a, "alice rate"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "two edges counted on the cluster", func() bool { return a.Instances() == 2 })

	for _, key := range []string{keys[1], a.keyPrefix + "alice rate", a.keyPrefix + "edges"} {
		slot := redistest.SlotOf(key)
		for _, to := range cl.Addrs {
			if to != cl.Owner(t, slot) {
				cl.MoveSlot(t, slot, to)
				break
			}
		}
	}
	if got := read(a); got != "one" {
		t.Fatalf("after the slot moved: read %q", got)
	}
	save(b, "two")
	if got := read(a); got != "two" {
		t.Fatalf("after the slot moved: read %q, want two", got)
	}
	if err := lease(ctx, b, "alice rate"); err != nil {
		t.Fatalf("a lease after its slot moved: %v", err)
	}
	if a.Degraded() || b.Degraded() {
		t.Error("a moved slot marked the store down: MOVED and ASK are redirects, not failures")
	}
	waitFor(t, 3*time.Second, "two edges counted after the move", func() bool { return b.Instances() == 2 })
}

// TestStoreOverTLS: with tls and the CA that signed the server's
// certificate, the store leases over TLS; with another CA, or none (the
// system's roots), it cannot, and says so (ErrUnavailable) rather than
// talking to a server it cannot verify. (A timeout of a second: the
// first lease pays for the TLS handshake, slow under -race.)
func TestStoreOverTLS(t *testing.T) {
	r := redistest.StartTLS(t)
	second := caddy.Duration(time.Second)
	s := edge(t, Config{Address: r.TLSAddr, TLS: &TLS{CAFile: r.CAFile}, Timeout: second})
	if err := lease(t.Context(), s, "alice"); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	other := redistest.StartTLS(t)
	for name, c := range map[string]*TLS{"another CA": {CAFile: other.CAFile}, "the system's roots": {}} {
		s := edge(t, Config{Address: r.TLSAddr, TLS: c, Timeout: second})
		if err := lease(t.Context(), s, "alice"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want the store unavailable", name, err)
		}
	}
	plain := edge(t, Config{Address: r.TLSAddr, Timeout: second})
	if err := lease(t.Context(), plain, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("plaintext to the TLS port: %v, want the store unavailable", err)
	}
}
