package handler

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// Limits are what one peer may send through this edge instance. ilp_edge
// answers a Prepare beyond them with the Reject senders understand, so
// that STREAM resizes its packets or slows down instead of failing, and
// the packet never reaches a connector.
type Limits struct {
	// The largest amount one Prepare may carry. A larger one gets F08
	// Amount Too Large, whose data holds the amount received and this
	// maximum, from which STREAM senders size their packets. 0: no limit.
	MaxPacketAmount uint64 `json:"max_packet_amount,omitempty"`

	// Packets per period. One beyond gets T05 Rate Limited, which senders
	// retry after backing off.
	Rate *Budget `json:"rate,omitempty"`

	// The sum of the Prepares' amounts per period. One beyond gets T04
	// Insufficient Liquidity, as ilp-connector and interledger-rs answer
	// it; a Prepare larger than the burst can never pass and gets F08. A
	// Prepare that is then rejected (by a connector or the edge) gives
	// its amount back, so failed attempts do not use up the budget.
	Throughput *Budget `json:"throughput,omitempty"`
}

// Budget is Limit units per Period, of which up to Burst may be used at
// once.
type Budget struct {
	Limit  uint64         `json:"limit"`
	Period caddy.Duration `json:"period"`
	// Default: Limit, one period's worth.
	Burst uint64 `json:"burst,omitempty"`
}

// maxBudgetPeriod bounds Period so that gcra's 128-bit products cannot
// overflow.
const maxBudgetPeriod = 24 * time.Hour

func (b *Budget) validate(what string) error {
	switch {
	case b.Limit == 0:
		return fmt.Errorf("%s: limit must be at least 1", what)
	case b.Period <= 0 || time.Duration(b.Period) > maxBudgetPeriod:
		return fmt.Errorf("%s: period must be more than 0 and at most %v", what, maxBudgetPeriod)
	}
	return nil
}

func (b *Budget) burst() uint64 {
	if b.Burst == 0 {
		return b.Limit
	}
	return b.Burst
}

// merged is l with the fields over sets replaced: a peer's own limits
// over the edge's defaults.
func (l *Limits) merged(over *Limits) *Limits {
	var m Limits
	if l != nil {
		m = *l
	}
	if over != nil {
		if over.MaxPacketAmount != 0 {
			m.MaxPacketAmount = over.MaxPacketAmount
		}
		if over.Rate != nil {
			m.Rate = over.Rate
		}
		if over.Throughput != nil {
			m.Throughput = over.Throughput
		}
	}
	if m == (Limits{}) {
		return nil
	}
	return &m
}

func (l *Limits) validate(what string) error {
	if l == nil {
		return nil
	}
	if l.Rate != nil {
		if err := l.Rate.validate(what + " rate"); err != nil {
			return err
		}
	}
	if l.Throughput != nil {
		if err := l.Throughput.validate(what + " throughput"); err != nil {
			return err
		}
	}
	return nil
}

// budget is one of a peer's budgets: kept in process (localBudget), or
// shared by every edge instance through Redis (sharedBudget).
type budget interface {
	// take spends n units. It returns errOverBudget if the budget does
	// not have them, or, when a shared budget's store cannot answer and
	// on_store_failure is deny, the store's error. It returns by
	// deadline, the packet's expiry.
	take(ctx context.Context, deadline time.Time, n uint64) error
	// refund gives n units back, never more than a full budget.
	refund(n uint64)
}

var errOverBudget = errors.New("over budget")

// localBudget is a budget this instance keeps alone.
type localBudget struct{ *gcra }

func (b localBudget) take(_ context.Context, _ time.Time, n uint64) error {
	if !b.gcra.take(now(), n) {
		return errOverBudget
	}
	return nil
}

func (b localBudget) refund(n uint64) { b.gcra.refund(now(), n) }

// peerLimits is a peer's Limits, provisioned. Its budgets are shared
// through a caddy.UsagePool, keyed by peer and settings, so that a reload
// that keeps them keeps what the peer has used.
type peerLimits struct {
	maxAmount        uint64 // the largest Prepare that can ever pass; 0: any
	rate, throughput budget
	keys             []string // in budgets, released on Cleanup
}

// budgets holds every peer's budgets.
var budgets = caddy.NewUsagePool()

type budgetState struct{ budget }

func (budgetState) Destruct() error { return nil }

// newPeerLimits provisions a peer's limits, kept in process, or shared
// through store when it is not nil.
func newPeerLimits(peer string, l *Limits, st *store.Store) (*peerLimits, error) {
	if l == nil {
		return nil, nil
	}
	pl := &peerLimits{maxAmount: l.MaxPacketAmount}
	load := func(kind string, b *Budget) (budget, error) {
		if b == nil {
			return nil, nil
		}
		key := fmt.Sprintf("%s %s %d/%v burst %d", peer, kind, b.Limit, time.Duration(b.Period), b.burst())
		name := key
		if st != nil {
			key = st.ID() + " " + key
		}
		v, _, err := budgets.LoadOrNew(key, func() (caddy.Destructor, error) {
			if st != nil {
				sb, err := newSharedBudget(st, name, b)
				if err != nil {
					return nil, fmt.Errorf("peer %q: %s: %w", peer, kind, err)
				}
				return budgetState{sb}, nil
			}
			return budgetState{localBudget{newGCRA(b.Limit, time.Duration(b.Period), b.burst(), now())}}, nil
		})
		if err != nil {
			return nil, err
		}
		pl.keys = append(pl.keys, key)
		return v.(budgetState).budget, nil
	}
	var err error
	if pl.rate, err = load("rate", l.Rate); err != nil {
		return nil, err
	}
	if pl.throughput, err = load("throughput", l.Throughput); err != nil {
		return nil, err
	}
	if b := l.Throughput; b != nil && (pl.maxAmount == 0 || b.burst() < pl.maxAmount) {
		pl.maxAmount = b.burst()
	}
	return pl, nil
}

// release gives up the budgets; a second call does nothing.
func (pl *peerLimits) release() {
	for _, k := range pl.keys {
		budgets.Delete(k)
	}
	pl.keys = nil
}

// admit spends the packet's share of the peer's budgets, or returns the
// Reject it gets instead; charged says whether its amount was taken from
// the throughput budget, to be given back if it is rejected.
func (pl *peerLimits) admit(ctx context.Context, pkt *Packet) (charged bool, _ *edgeReject) {
	amount := pkt.prepare.Amount
	if pl.maxAmount > 0 && amount > pl.maxAmount {
		data := make([]byte, 16)
		binary.BigEndian.PutUint64(data, amount)
		binary.BigEndian.PutUint64(data[8:], pl.maxAmount)
		return false, &edgeReject{code: ilpdest.CodeF08, message: "packet amount too large", data: data}
	}
	expiry := pkt.prepare.ExpiresAt
	if pl.rate != nil {
		if err := pl.rate.take(ctx, expiry, 1); err != nil {
			return false, overBudget(ilpdest.CodeT05, "rate limit exceeded", err)
		}
	}
	if pl.throughput != nil {
		if err := pl.throughput.take(ctx, expiry, amount); err != nil {
			// The packet's rate unit stays spent: it was sent.
			return false, overBudget(ilpdest.CodeT04, "throughput limit exceeded", err)
		}
		return true, nil
	}
	return false, nil
}

// overBudget is the Reject for a budget's take error: code, or T05 when
// the shared store could not say (on_store_failure deny), which makes a
// sender back off and retry as it does for a rate limit.
func overBudget(code ilpdest.Code, message string, err error) *edgeReject {
	if errors.Is(err, errOverBudget) {
		return &edgeReject{code: code, message: message}
	}
	return &edgeReject{code: ilpdest.CodeT05, message: "limit store unavailable", cause: err}
}

// settle gives a rejected packet's amount back to the throughput budget.
func (pl *peerLimits) settle(pkt *Packet) {
	if pkt.charged && pkt.answer.result != resultFulfill {
		pl.throughput.refund(pkt.prepare.Amount)
	}
}
