package handler

import (
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// sendAmount sends alice's Prepare of amount through e to be, and returns
// the code of the Reject it got, or "fulfill".
func sendAmount(t *testing.T, e *Edge, be *backend, peerAuth string, amount uint64) string {
	t.Helper()
	body := ilptest.NewPrepare(ilpdest.Prepare{Amount: amount, Destination: []byte("g.us.bank.alice"), ExpiresAt: now().Add(time.Minute)})
	w, err := serve(t, e, newRequest(http.MethodPost, body, "Authorization", peerAuth), be)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ilptest.FulfillData(w.Body.Bytes()); ok {
		return "fulfill"
	}
	code, err := ilpdest.ReadRejectCode(w.Body.Bytes())
	if err != nil {
		t.Fatalf("reply %x: %v", w.Body.Bytes(), err)
	}
	return code.String()
}

func TestMaxPacketAmountGetsF08WithItsAmounts(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.Limits = &Limits{MaxPacketAmount: 1000} })
	be := &backend{}
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1000); got != "fulfill" {
		t.Fatalf("exactly the maximum: %s", got)
	}
	body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 1001, Destination: []byte("g.us.bank.alice")})
	w, err := serve(t, e, newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken), be)
	wantReject(t, w, err, "F08")
	rej, _ := ilpdest.ReadReject(w.Body.Bytes())
	if len(rej.Data) != 16 || binary.BigEndian.Uint64(rej.Data) != 1001 || binary.BigEndian.Uint64(rej.Data[8:]) != 1000 {
		t.Errorf("F08 data %x, want receivedAmount 1001 and maximumAmount 1000", rej.Data)
	}
	if be.calls != 1 {
		t.Errorf("the connector got %d packets, want only the one within the limit", be.calls)
	}
}

func TestRateLimitGetsT05(t *testing.T) {
	clock := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	setClock(t, func() time.Time { return clock })
	e, _ := testEdge(t, func(e *Edge) {
		e.Limits = &Limits{Rate: &Budget{Limit: 2, Period: caddy.Duration(time.Minute)}}
	})
	be := &backend{}
	for i, want := range []string{"fulfill", "fulfill", "T05"} {
		if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1); got != want {
			t.Errorf("packet %d: %s, want %s", i+1, got, want)
		}
	}
	// Budgets are per peer: carol is not limited by alice's packets.
	if got := sendAmount(t, e, be, carolRaw, 1); got != "fulfill" {
		t.Errorf("carol's first packet: %s", got)
	}
	clock = clock.Add(30 * time.Second) // one packet's worth back
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1); got != "fulfill" {
		t.Errorf("after 30 s: %s", got)
	}
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1); got != "T05" {
		t.Errorf("a second packet after 30 s: %s", got)
	}
	if be.calls != 4 {
		t.Errorf("the connector got %d packets, want the 4 admitted", be.calls)
	}
}

func TestThroughputLimitGetsT04AndRejectsRefund(t *testing.T) {
	clock := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	setClock(t, func() time.Time { return clock })
	e, _ := testEdge(t, func(e *Edge) {
		e.Limits = &Limits{Throughput: &Budget{Limit: 1000, Period: caddy.Duration(time.Minute)}}
	})
	reject := false
	be := &backend{answer: func(w http.ResponseWriter, r *http.Request) error {
		if reject {
			_, err := w.Write(ilptest.Reject("F99", "g.connector", "no"))
			return err
		}
		return fulfill(w, r)
	}}
	auth := "Bearer " + aliceToken
	for i, want := range []string{"fulfill", "fulfill", "T04"} {
		if got := sendAmount(t, e, be, auth, 400); got != want {
			t.Errorf("packet %d of 400: %s, want %s", i+1, got, want)
		}
	}
	if got := sendAmount(t, e, be, auth, 200); got != "fulfill" {
		t.Errorf("200 more, to exactly 1000: %s", got)
	}
	// A packet the connector rejects gives its amount back.
	clock = clock.Add(24 * time.Second) // 400 back
	reject = true
	if got := sendAmount(t, e, be, auth, 400); got != "F99" {
		t.Fatalf("rejected packet: %s", got)
	}
	reject = false
	if got := sendAmount(t, e, be, auth, 400); got != "fulfill" {
		t.Errorf("after a Reject refunded its 400: %s", got)
	}
	// Larger than the whole budget: it can never pass, so F08.
	if got := sendAmount(t, e, be, auth, 1001); got != "F08" {
		t.Errorf("1001 against a budget of 1000: %s", got)
	}
}

func TestPeerLimitsOverTheDefaults(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) {
		e.Limits = &Limits{MaxPacketAmount: 10, Rate: &Budget{Limit: 1, Period: caddy.Duration(time.Hour)}}
		e.Peers[0].Limits = &Limits{MaxPacketAmount: 100} // alice: her own maximum, the default rate
	})
	be := &backend{}
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 100); got != "fulfill" {
		t.Errorf("alice's 100: %s", got)
	}
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1); got != "T05" {
		t.Errorf("alice's second packet within the default rate: %s", got)
	}
	if got := sendAmount(t, e, be, carolRaw, 11); got != "F08" {
		t.Errorf("carol's 11 over the default maximum: %s", got)
	}
}

// TestBudgetsSurviveReload: a new config with the same limits gets the
// old config's budgets, so a reload does not hand a peer a fresh burst.
func TestBudgetsSurviveReload(t *testing.T) {
	limits := func(e *Edge) { e.Limits = &Limits{Rate: &Budget{Limit: 1, Period: caddy.Duration(time.Hour)}} }
	old, _ := testEdge(t, limits)
	be := &backend{}
	if got := sendAmount(t, old, be, "Bearer "+aliceToken, 1); got != "fulfill" {
		t.Fatal(got)
	}
	reloaded, _ := testEdge(t, limits)
	old.Cleanup()
	if got := sendAmount(t, reloaded, be, "Bearer "+aliceToken, 1); got != "T05" {
		t.Errorf("after a reload: %s, want the budget the old config had spent", got)
	}
	reloaded.Cleanup()
	fresh, _ := testEdge(t, limits)
	if got := sendAmount(t, fresh, be, "Bearer "+aliceToken, 1); got != "fulfill" {
		t.Errorf("once no config used the budget, a new one starts whole: %s", got)
	}
}

func TestLimitsValidation(t *testing.T) {
	for name, l := range map[string]*Limits{
		"rate of 0":        {Rate: &Budget{Limit: 0, Period: caddy.Duration(time.Second)}},
		"no period":        {Rate: &Budget{Limit: 1}},
		"period of 2 days": {Throughput: &Budget{Limit: 1, Period: caddy.Duration(48 * time.Hour)}},
	} {
		e := &Edge{Address: testAddress, Limits: l, Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}
		if err := provision(t, e); err == nil {
			t.Errorf("%s: provisioned", name)
		}
		e.Cleanup()
	}
}
