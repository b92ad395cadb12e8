package async

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
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
	// CallbackUnavailable: the exchange may wait at another edge, which
	// the shared store cannot reach now (it is down, or that edge is
	// gone or reconnecting): the peer should try again (503).
	CallbackUnavailable CallbackResult = "unavailable"
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
	store     *store.Store // where the wait is shared; nil: here only
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
// bytes), until deadline. With a shared store s, the wait is written
// there too, so that a reply landing on another edge is relayed to this
// one (store/replies.go); without it, or while it cannot answer, only a
// reply to this edge is taken. The caller must Unregister it when it
// stops waiting.
func (t *PendingTable) Register(ctx context.Context, s *store.Store, peer string, condition []byte, deadline time.Time) *Waiting {
	w := &Waiting{reply: make(chan Arrived, 1)}
	copy(w.condition[:], condition)
	t.mu.Lock()
	if t.waiting == nil {
		t.waiting = map[claimKey]*Waiting{}
	}
	for {
		// A collision of 122 random bits is not expected; drawing again
		// costs nothing and keeps the key unique regardless.
		w.key = claimKey{peer, NewRequestID()}
		if _, taken := t.waiting[w.key]; !taken {
			t.waiting[w.key] = w
			break
		}
	}
	t.mu.Unlock()
	if s != nil {
		s.ListenReplies(t.deliverRelayed)
		if s.ExpectReply(ctx, peer, string(w.key.id), condition, time.Until(deadline)) == nil {
			w.store = s
		}
	}
	return w
}

// ID is the Request-Id the exchange was registered under.
func (w *Waiting) ID() RequestID { return w.key.id }

// Reply is where the exchange's one reply arrives.
func (w *Waiting) Reply() <-chan Arrived { return w.reply }

// Unregister ends w's wait: a reply for it from now on is unknown, at
// this edge and, when no reply came, at the others too.
func (t *PendingTable) Unregister(w *Waiting) {
	t.mu.Lock()
	if t.waiting[w.key] == w {
		delete(t.waiting, w.key)
	}
	answered := w.answered
	t.mu.Unlock()
	if w.store != nil && !answered {
		// A reply marked the key answered, which it stays until it
		// expires: a second reply is refused as such at every edge.
		ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
		_ = w.store.ForgetReply(ctx, w.key.peer, string(w.key.id))
		cancel()
	}
}

// forgetTimeout bounds Unregister's call to the shared store; the key
// expires with the exchange anyway.
const forgetTimeout = time.Second

// Deliver hands peer's reply for id to the exchange waiting for it, if
// any and if it has none yet: here, or, when it waits at the edge named
// edge (the Callback-Url's), through the shared store s. body must be a
// well-formed Fulfill or Reject (ilpdest.ReadResponseType), and is
// kept: the caller must not modify it. A Fulfill whose fulfillment does
// not hash to the Prepare's condition is checked here, once for every
// reader, and is never handed on: the exchange learns only that its
// reply was bad.
func (t *PendingTable) Deliver(ctx context.Context, s *store.Store, edge, peer string, id RequestID, body []byte) CallbackResult {
	result := t.deliver(ctx, s, edge, claimKey{peer, id}, body)
	metricCallbacks.WithLabelValues(peer, string(result)).Inc()
	return result
}

func (t *PendingTable) deliver(ctx context.Context, s *store.Store, edge string, k claimKey, body []byte) CallbackResult {
	t.mu.Lock()
	w := t.waiting[k]
	answered := w != nil && w.answered
	t.mu.Unlock()
	switch {
	case answered:
		return CallbackAlreadyAnswered
	case w != nil:
		if w.store != nil {
			// Another edge may have relayed a reply already: the one
			// taken on the store is the exchange's. While the store
			// cannot answer, no other edge can relay one either.
			switch res, err := w.store.TakeReply(ctx, k.peer, string(k.id)); {
			case err != nil, res == store.ReplyTaken:
			case res == store.ReplyAnswered:
				return CallbackAlreadyAnswered
			default: // expired on the store: the exchange is ending
				return CallbackUnknown
			}
		}
		return t.deliverHere(k, body)
	case s == nil || edge == "" || edge == s.ReplyEdge():
		return CallbackUnknown
	}
	res, condition, err := s.RelayReply(ctx, edge, k.peer, string(k.id), body)
	switch {
	case errors.Is(err, store.ErrBadReplyEdge):
		return CallbackUnknown
	case err != nil, res == store.ReplyNoListener:
		return CallbackUnavailable
	case res == store.ReplyAnswered:
		return CallbackAlreadyAnswered
	case res == store.ReplyUnknown:
		return CallbackUnknown
	}
	metricRelayed.WithLabelValues("sent").Inc()
	if !fulfills(body, condition) {
		return CallbackBadFulfillment
	}
	return CallbackDelivered
}

// deliverHere gives the exchange k waiting at this edge its reply, if it
// has none yet.
func (t *PendingTable) deliverHere(k claimKey, body []byte) CallbackResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.waiting[k]
	switch {
	case w == nil:
		return CallbackUnknown
	case w.answered:
		return CallbackAlreadyAnswered
	}
	w.answered = true
	a := Arrived{Body: body, Result: CallbackDelivered}
	if !fulfills(body, w.condition[:]) {
		a = Arrived{Result: CallbackBadFulfillment}
	}
	w.reply <- a // its one send: the buffer has room
	return a.Result
}

// deliverRelayed takes a reply another edge relayed to this one through
// the shared store. The other edge answered the peer already, and
// counted the callback; the exchange may have ended meanwhile (late).
func (t *PendingTable) deliverRelayed(peer, id string, body []byte) {
	switch t.deliverHere(claimKey{peer, RequestID(id)}, body) {
	case CallbackDelivered, CallbackBadFulfillment:
		metricRelayed.WithLabelValues("received").Inc()
	default:
		metricRelayed.WithLabelValues("late").Inc()
	}
}

// fulfills reports whether body, a well-formed Fulfill or Reject, is not
// a Fulfill whose fulfillment fails to hash to condition.
func fulfills(body, condition []byte) bool {
	f, err := ilpdest.ReadFulfill(body)
	if err != nil {
		return true // a Reject
	}
	sum := sha256.Sum256(f.Fulfillment)
	return subtle.ConstantTimeCompare(sum[:], condition) == 1
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

// EdgeParam is the query parameter of ilp_egress's Callback-Url that
// names the edge waiting for the reply (store.ReplyEdge), for the edge
// the callback lands on.
const EdgeParam = "edge"
