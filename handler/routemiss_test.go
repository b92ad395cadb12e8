package handler

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

const fleetAddress = "test.fleet"

func reject(code ilpdest.Code, by, message string) []byte {
	return ilptest.Reject(code.String(), by, message)
}

// TestRouteMissDecision is the decision table: code × triggeredBy ×
// message × time left × tries.
func TestRouteMissDecision(t *testing.T) {
	m := &RouteMiss{FleetAddresses: []string{"test.other", fleetAddress}, MaxTries: 3}
	noRoute := reject(ilpdest.CodeF02, fleetAddress, "no route found. source=test.edge destination=test.x.y")
	for _, c := range []struct {
		name  string
		reply []byte
		tries int
		left  time.Duration
		want  bool
	}{
		{"ilp-connector: no route", noRoute, 1, time.Second, true},
		{"ilp-connector: no such account", reject(ilpdest.CodeF02, fleetAddress, "tried to send data to non-existent account. accountId=x"), 1, time.Second, true},
		{"ilp-connector: plugin not connected", reject(ilpdest.CodeT01, fleetAddress, "no connection to account. account=x"), 1, time.Second, true},
		{"rafiki: unknown destination account", reject(ilpdest.CodeF02, fleetAddress, "unknown destination account"), 2, time.Second, true},
		{"rafiki: no outgoing endpoint", reject(ilpdest.CodeF02, fleetAddress, "no outgoing endpoint"), 1, time.Second, true},
		{"interledger-rs: no outgoing route", reject(ilpdest.CodeF02, "test.other", "No outgoing route for account: 1"), 1, time.Second, true},

		{"F02 from downstream", reject(ilpdest.CodeF02, "test.elsewhere", "no route found. source=a destination=b"), 1, time.Second, false},
		{"F02 without triggeredBy", reject(ilpdest.CodeF02, "", "no route found. source=a destination=b"), 1, time.Second, false},
		{"ilp-connector: plugin failed after sending", reject(ilpdest.CodeF02, fleetAddress, "failed to send packet: failed to fetch. code=502"), 1, time.Second, false},
		{"interledger-rs: F02 with no message", reject(ilpdest.CodeF02, fleetAddress, ""), 1, time.Second, false},
		{"rafiki: internal error", reject(ilpdest.CodeT00, fleetAddress, "unexpected internal error"), 1, time.Second, false},
		{"right message, other code", reject(ilpdest.Code{'F', '9', '9'}, fleetAddress, "no route found."), 1, time.Second, false},
		{"T01 with a route-miss F02 message", reject(ilpdest.CodeT01, fleetAddress, "no route found."), 1, time.Second, false},
		{"a Fulfill", ilptest.Fulfill(nil), 1, time.Second, false},
		{"not a packet", []byte("no route found."), 1, time.Second, false},
		{"truncated Reject", noRoute[:len(noRoute)-3], 1, time.Second, false},

		{"no time left", noRoute, 1, 0, false},
		{"time ran out", noRoute, 1, -time.Millisecond, false},
		{"tries at max_tries", noRoute, 3, time.Second, false},
		{"tries below max_tries", noRoute, 2, time.Second, true},
	} {
		if got := m.mayRetry(c.reply, c.tries, c.left); got != c.want {
			t.Errorf("%s: mayRetry = %v, want %v", c.name, got, c.want)
		}
	}
	every := &RouteMiss{FleetAddresses: []string{fleetAddress}}
	if !every.mayRetry(noRoute, 100, time.Second) {
		t.Error("max_tries 0: a route miss after 100 tries is not retried, want every connector tried")
	}
}

// fleet stands for a forwarder and its connectors, in rank order: each
// call sends the packet to the first connector that has not missed it,
// and answers with that connector's reply; with none left, it fails as a
// forwarder with no upstream does.
type fleet struct {
	addrs   []string
	replies map[string]func(w http.ResponseWriter) error
	sent    []string
}

func (f *fleet) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	pkt := PacketFrom(r)
	for rank, a := range f.addrs {
		if pkt.RouteMissed(a) {
			continue
		}
		pkt.SetRoute(r, "key", a, rank)
		f.sent = append(f.sent, a)
		return f.replies[a](w)
	}
	return NewForwardError(NoUpstream, "", errNoForwarder)
}

func replyWith(b []byte) func(w http.ResponseWriter) error {
	return func(w http.ResponseWriter) error { _, err := w.Write(b); return err }
}

func failWith(f Failure) func(w http.ResponseWriter) error {
	return func(http.ResponseWriter) error { return NewForwardError(f, "x:1", errNoForwarder) }
}

func TestRouteMissFailover(t *testing.T) {
	miss := replyWith(reject(ilpdest.CodeF02, fleetAddress, "no route found. source=test.edge destination=test.x"))
	downstream := reject(ilpdest.CodeF02, "test.downstream", "no route found. source=test.fleet destination=test.x")
	for _, c := range []struct {
		name     string
		maxTries int
		replies  []func(http.ResponseWriter) error
		wantSent int
		wantCode string // "" for the Fulfill
		wantBy   string
	}{
		{"first misses, second fulfills", 0, []func(http.ResponseWriter) error{miss, replyWith(ilptest.Fulfill(nil)), miss}, 2, "", ""},
		{"every one misses: the last miss", 0, []func(http.ResponseWriter) error{miss, miss, miss}, 3, "F02", fleetAddress},
		{"max_tries 2", 2, []func(http.ResponseWriter) error{miss, miss, replyWith(ilptest.Fulfill(nil))}, 2, "F02", fleetAddress},
		{"a downstream F02 is relayed", 0, []func(http.ResponseWriter) error{replyWith(downstream), miss, miss}, 1, "F02", "test.downstream"},
		{"the next one is unreachable: the miss stands", 0, []func(http.ResponseWriter) error{miss, failWith(NotDelivered), miss}, 2, "F02", fleetAddress},
		{"the next one broke off: T00", 0, []func(http.ResponseWriter) error{miss, failWith(Broken), miss}, 2, "T00", testAddress},
		{"the next one's Reject is relayed", 0, []func(http.ResponseWriter) error{miss, replyWith(reject(ilpdest.Code{'F', '9', '9'}, fleetAddress, "app")), miss}, 2, "F99", fleetAddress},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := testEdge(t, func(e *Edge) {
				e.RouteMiss = &RouteMiss{FleetAddresses: []string{fleetAddress}, MaxTries: c.maxTries}
			})
			f := &fleet{addrs: []string{"a:1", "b:2", "c:3"}, replies: map[string]func(http.ResponseWriter) error{}}
			for i, a := range f.addrs {
				f.replies[a] = c.replies[i]
			}
			w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("test.x.alice", time.Minute), "Authorization", "Bearer "+aliceToken), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.sent) != c.wantSent {
				t.Errorf("sent to %v, want %d connectors", f.sent, c.wantSent)
			}
			if c.wantCode == "" {
				if _, ferr := ilpdest.ReadFulfill(w.Body.Bytes()); ferr != nil {
					t.Fatalf("reply %x is not a Fulfill: %v", w.Body.Bytes(), ferr)
				}
				return
			}
			rej, rerr := ilpdest.ReadReject(w.Body.Bytes())
			if rerr != nil || rej.Code.String() != c.wantCode || rej.TriggeredBy != c.wantBy {
				t.Fatalf("reply %x (%v): %v by %q, want %s by %s", w.Body.Bytes(), rerr, rej.Code, rej.TriggeredBy, c.wantCode, c.wantBy)
			}
		})
	}
}

// TestRouteMissOffByDefault: without route_miss_failover, a route miss is
// relayed as it came.
func TestRouteMissOffByDefault(t *testing.T) {
	e, _ := testEdge(t, nil)
	miss := replyWith(reject(ilpdest.CodeF02, fleetAddress, "no route found."))
	f := &fleet{addrs: []string{"a:1", "b:2"}, replies: map[string]func(http.ResponseWriter) error{
		"a:1": miss, "b:2": replyWith(ilptest.Fulfill(nil))}}
	w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("test.x.alice", time.Minute), "Authorization", "Bearer "+aliceToken), f)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := ilpdest.ReadRejectCode(w.Body.Bytes()); code != ilpdest.CodeF02 || len(f.sent) != 1 {
		t.Fatalf("code %v after %v, want the F02 from the first connector alone", code, f.sent)
	}
}

// TestRouteMissAfterExpiry: a route miss that arrives when the packet has
// no time left is not sent on.
func TestRouteMissAfterExpiry(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.RouteMiss = &RouteMiss{FleetAddresses: []string{fleetAddress}} })
	start := time.Now()
	clock := start
	setClock(t, func() time.Time { return clock })
	f := &fleet{addrs: []string{"a:1", "b:2"}, replies: map[string]func(http.ResponseWriter) error{
		"a:1": func(w http.ResponseWriter) error {
			clock = start.Add(2 * time.Second) // the connector took longer than the packet had
			return replyWith(reject(ilpdest.CodeF02, fleetAddress, "no route found."))(w)
		},
		"b:2": replyWith(ilptest.Fulfill(nil)),
	}}
	body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 1, Destination: []byte("test.x.alice"), ExpiresAt: start.Add(time.Second)})
	w, err := serve(t, e, newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.sent) != 1 {
		t.Fatalf("sent to %v, want the first connector only", f.sent)
	}
	if code, _ := ilpdest.ReadRejectCode(w.Body.Bytes()); code != ilpdest.CodeF02 {
		t.Fatalf("code %v, want the route miss relayed", code)
	}
}

func TestRouteMissCounted(t *testing.T) {
	e, logs := testEdge(t, func(e *Edge) { e.RouteMiss = &RouteMiss{FleetAddresses: []string{fleetAddress}} })
	f := &fleet{addrs: []string{"stale:1", "b:2"}, replies: map[string]func(http.ResponseWriter) error{
		"stale:1": replyWith(reject(ilpdest.CodeF02, fleetAddress, "no route found.")),
		"b:2":     replyWith(ilptest.Fulfill(nil)),
	}}
	before := routeMissTotal("stale:1")
	for range 3 {
		if _, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("test.x.alice", time.Minute), "Authorization", "Bearer "+aliceToken), f); err != nil {
			t.Fatal(err)
		}
	}
	if got := routeMissTotal("stale:1") - before; got != 3 {
		t.Errorf("route misses of stale:1 in the admin table grew by %d, want 3", got)
	}
	if n := logs.FilterMessageSnippet("has no route").Len(); n != 1 {
		t.Errorf("%d route-miss log lines for 3 misses within a second, want 1", n)
	}
}

func routeMissTotal(upstream string) uint64 {
	for _, s := range RouteMisses() {
		if s.Upstream == upstream {
			return s.Total
		}
	}
	return 0
}

func TestRouteMissCaddyfile(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    *RouteMiss
		wantErr string
	}{
		{in: `route_miss_failover test.fleet`, want: &RouteMiss{FleetAddresses: []string{"test.fleet"}}},
		{in: "route_miss_failover test.a {\n fleet_address test.b test.c\n max_tries 2\n}",
			want: &RouteMiss{FleetAddresses: []string{"test.a", "test.b", "test.c"}, MaxTries: 2}},
		{in: `route_miss_failover`, wantErr: "no fleet address"},
		{in: `route_miss_failover not..valid`, wantErr: "not a valid ILP address"},
		{in: "route_miss_failover test.a {\n max_tries 1\n}", wantErr: "at least 2"},
		{in: "route_miss_failover test.a {\n bogus\n}", wantErr: "unrecognized"},
	} {
		d := caddyfile.NewTestDispenser(c.in)
		d.Next()
		got, err := unmarshalRouteMiss(d)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("%q: error %v, want one with %q and the line", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !equalRouteMiss(got, c.want) {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func equalRouteMiss(a, b *RouteMiss) bool {
	if a.MaxTries != b.MaxTries || len(a.FleetAddresses) != len(b.FleetAddresses) {
		return false
	}
	for i := range a.FleetAddresses {
		if a.FleetAddresses[i] != b.FleetAddresses[i] {
			return false
		}
	}
	return true
}
