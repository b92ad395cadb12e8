package async

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"sync"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// This file is the edge as a draft 3 sender (ilp_egress): the Prepares it
// sent to peers with a Request-Id of its own, each waiting for the reply
// the peer POSTs to the edge's callback route (an ilp_edge with
// `replies`). One table per process: the exchange waits in ilp_egress,
// the reply arrives in ilp_edge, and neither knows the other's config.

// CallbackResult is what became of a peer's reply POSTed to the
// callback route: the callback's answer, and its metric's outcome label.
type CallbackResult string

// The results of PendingTable.Deliver. The names differ from the draft's
// words (delivered, unknown) only because Delivered is the sender's
// Outcome in this package.
const (
	// CallbackDelivered: the reply went to the exchange waiting for it
	// (200).
	CallbackDelivered CallbackResult = "delivered"
	// CallbackUnknown: no exchange of this peer waits for this id: never
	// sent, already ended, or another peer's (400).
	CallbackUnknown CallbackResult = "unknown"
	// CallbackAlreadyAnswered: the exchange had its reply already, and
	// "the sender of the ILP Prepare should only process the first ILP
	// reply" (400).
	CallbackAlreadyAnswered CallbackResult = "already_answered"
	// CallbackBadFulfillment: a Fulfill whose fulfillment does not hash
	// to the Prepare's condition. It is the exchange's one reply (the
	// waiting side gets a failure, never the Fulfill), and the peer is
	// told with a 400 that its reply was wrong (400).
	CallbackBadFulfillment CallbackResult = "bad_fulfillment"
	// CallbackMalformed: no valid Request-Id, or a body that is not a
	// well-formed Fulfill or Reject; counted by the callback route, which
	// never gets as far as Deliver (400).
	CallbackMalformed CallbackResult = "malformed"
)

// Pending is the process's table of egress exchanges waiting for a
// reply by callback.
var Pending = new(PendingTable)

// PendingTable holds the exchanges waiting for a reply by callback, keyed
// by peer and Request-Id: a reply is matched only to a Prepare sent to
// the peer that authenticated the callback, so that no peer can answer,
// or learn of, another's.
type PendingTable struct {
	mu      sync.Mutex
	waiting map[claimKey]*Waiting
}

// Waiting is one exchange waiting for its reply: Reply delivers it once.
type Waiting struct {
	key       claimKey
	condition [32]byte
	reply     chan Arrived // buffered: Deliver never blocks
	answered  bool         // under the table's lock
}

// Arrived is the reply that came by callback for a Waiting exchange.
type Arrived struct {
	// The Fulfill or Reject as the peer POSTed it; nil when Result is
	// CallbackBadFulfillment.
	Body   []byte
	Result CallbackResult // CallbackDelivered or CallbackBadFulfillment
}

// NewRequestID returns a fresh Request-Id: a version 4 UUID from
// crypto/rand, as the draft asks of a sender.
func NewRequestID() RequestID {
	var b [16]byte
	_, _ = rand.Read(b[:])  // never fails (crypto/rand's contract since Go 1.24)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	const hex = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, c := range b {
		switch i {
		case 4, 6, 8, 10:
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
	return RequestID(s[:])
}

// Register makes an exchange of peer wait under a fresh Request-Id for
// the reply to a Prepare with condition (its execution condition, 32
// bytes). The caller must Unregister it when it stops waiting.
func (t *PendingTable) Register(peer string, condition []byte) *Waiting {
	w := &Waiting{reply: make(chan Arrived, 1)}
	copy(w.condition[:], condition)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiting == nil {
		t.waiting = map[claimKey]*Waiting{}
	}
	for {
		// A collision of 122 random bits is not expected; drawing again
		// costs nothing and keeps the key unique regardless.
		w.key = claimKey{peer, NewRequestID()}
		if _, taken := t.waiting[w.key]; !taken {
			t.waiting[w.key] = w
			return w
		}
	}
}

// ID is the Request-Id the exchange was registered under.
func (w *Waiting) ID() RequestID { return w.key.id }

// Reply is where the exchange's one reply arrives.
func (w *Waiting) Reply() <-chan Arrived { return w.reply }

// Unregister ends w's wait: a reply for it from now on is unknown.
func (t *PendingTable) Unregister(w *Waiting) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiting[w.key] == w {
		delete(t.waiting, w.key)
	}
}

// Deliver hands peer's reply for id to the exchange waiting for it, if
// any and if it has none yet. body must be a well-formed Fulfill or
// Reject (ilpdest.ReadResponseType), and is kept: the caller must not
// modify it. A Fulfill whose fulfillment does not hash to the Prepare's
// condition is checked here, once for every reader, and is never handed
// on: the exchange learns only that its reply was bad.
func (t *PendingTable) Deliver(peer string, id RequestID, body []byte) CallbackResult {
	result := t.deliver(peer, id, body)
	metricCallbacks.WithLabelValues(peer, string(result)).Inc()
	return result
}

func (t *PendingTable) deliver(peer string, id RequestID, body []byte) CallbackResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.waiting[claimKey{peer, id}]
	switch {
	case w == nil:
		return CallbackUnknown
	case w.answered:
		return CallbackAlreadyAnswered
	}
	w.answered = true
	a := Arrived{Body: body, Result: CallbackDelivered}
	if f, err := ilpdest.ReadFulfill(body); err == nil {
		sum := sha256.Sum256(f.Fulfillment)
		if subtle.ConstantTimeCompare(sum[:], w.condition[:]) != 1 {
			a = Arrived{Result: CallbackBadFulfillment}
		}
	}
	w.reply <- a // its one send: the buffer has room
	return a.Result
}

// CountCallback counts a reply that the callback route refused before
// Deliver (CallbackMalformed).
func CountCallback(peer string, result CallbackResult) {
	metricCallbacks.WithLabelValues(peer, string(result)).Inc()
}

// Len is how many exchanges are waiting.
func (t *PendingTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting)
}

// WaitingFor is how many exchanges of peer are waiting, for the admin API.
func (t *PendingTable) WaitingFor(peer string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k := range t.waiting {
		if k.peer == peer {
			n++
		}
	}
	return n
}
