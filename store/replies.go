package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// An edge that sent a Prepare asynchronously (ilp_egress toward an RFC 35
// draft 3 peer) waits for the peer's reply by callback, and the callback
// may land on any edge behind the operator's balancer. The waiting edge
// writes a key per exchange, named after the edge and holding the
// Prepare's condition, that expires with the exchange; the edge it names
// in its Callback-Url (ReplyEdge) listens on a channel of its own. An
// edge that gets a reply it is not waiting for relays it there: one
// script checks the key, publishes the reply and marks the key answered,
// so that a peer's second reply finds it answered at every edge, and a
// reply is never published to an edge that is not listening (it is gone:
// the peer is answered 503 and tries again, and the key expires with
// the exchange).
//
// The key and the channel share the hash tag {<edge>}: on a Cluster the
// script runs on the node that owns both, and publishes with SPUBLISH,
// whose count of receivers is exact there (PUBLISH counts only the
// publishing node's subscribers).

// ReplyResult is what became of a reply by callback on the store.
type ReplyResult int

// The results of TakeReply and RelayReply.
const (
	// ReplyUnknown: no exchange waits for it: never sent, ended, or
	// expired.
	ReplyUnknown ReplyResult = iota
	// ReplyTaken: the reply is the exchange's: TakeReply's caller
	// delivers it; RelayReply published it to the waiting edge.
	ReplyTaken
	// ReplyAnswered: a reply for the exchange came before.
	ReplyAnswered
	// ReplyNoListener: the waiting edge does not listen (it is gone, or
	// reconnecting): nothing was published, nothing marked.
	ReplyNoListener
)

// takeReplyScript marks the exchange KEYS[1] answered and returns 1, if
// it waits and has no reply yet; else 0 (unknown) or 2 (answered).
var takeReplyScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v == '' then return 2 end
redis.call('SET', KEYS[1], '', 'KEEPTTL')
return 1
`)

// relayReplyScript publishes ARGV[3] on the channel ARGV[2] with the
// command ARGV[1] (PUBLISH, or SPUBLISH on a Cluster) if the exchange
// KEYS[1] waits for its reply, and then marks it answered: it returns
// {1, the exchange's condition}, else {0} (unknown), {2} (answered) or
// {3} (nobody listens on the channel).
var relayReplyScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
if v == '' then return {2} end
if redis.call(ARGV[1], ARGV[2], ARGV[3]) == 0 then return {3} end
redis.call('SET', KEYS[1], '', 'KEEPTTL')
return {1, v}
`)

// expectReplyScript writes the exchange KEYS[1] with the condition
// ARGV[1] for ARGV[2] ms; forgetReplyScript deletes it. Scripts rather
// than commands so that every call goes through run, which notes Redis'
// failures as the limits' and tables' calls do.
var (
	expectReplyScript = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`)
	forgetReplyScript = redis.NewScript(`return redis.call('DEL', KEYS[1])`)
)

// replyEdgeLen is the length of a ReplyEdge: 16 hex digits.
const replyEdgeLen = 16

// ErrBadReplyEdge is RelayReply's error for an edge name that no edge
// could have sent: the peer changed its Callback-Url.
var ErrBadReplyEdge = errors.New("not an edge's name")

// replies is a store's side of the exchanges its edge waits for.
type replies struct {
	edge   string // random: names this edge process in callback URLs
	listen sync.Once
	pubsub *redis.PubSub // nil until ListenReplies
	done   chan struct{}
}

func newReplies() *replies {
	var b [replyEdgeLen / 2]byte
	_, _ = rand.Read(b[:])
	return &replies{edge: hex.EncodeToString(b[:]), done: make(chan struct{})}
}

// ReplyEdge names this edge process for the replies to its asynchronous
// Prepares: ilp_egress puts it in the Callback-Url, and an edge that gets
// a reply hands it to RelayReply. It is random, so that it tells a peer
// nothing of the host.
func (s *Store) ReplyEdge() string { return s.replies.edge }

// replyKey is the key of peer's exchange id waiting at edge; replyChannel
// is where edge listens.
func (s *Store) replyKey(edge, peer, id string) string {
	return s.keyPrefix + "reply:{" + edge + "}:" + peer + ":" + id
}

func (s *Store) replyChannel(edge string) string {
	return s.keyPrefix + "reply:{" + edge + "}"
}

// ExpectReply records that this edge waits for peer's reply to the
// Prepare it sent as id, with condition, for ttl.
func (s *Store) ExpectReply(ctx context.Context, peer, id string, condition []byte, ttl time.Duration) error {
	if !s.Asking(time.Now()) {
		return ErrUnavailable
	}
	_, err := s.run(ctx, time.Now().Add(s.timeout), time.Time{}, expectReplyScript,
		[]string{s.replyKey(s.replies.edge, peer, id)}, condition, max(ttl.Milliseconds(), 1))
	return err
}

// TakeReply claims, for this edge, the one reply to peer's exchange id:
// ReplyTaken, or ReplyAnswered when another edge relayed one before.
func (s *Store) TakeReply(ctx context.Context, peer, id string) (ReplyResult, error) {
	if !s.Asking(time.Now()) {
		return 0, ErrUnavailable
	}
	res, err := s.run(ctx, time.Now().Add(s.timeout), time.Time{}, takeReplyScript,
		[]string{s.replyKey(s.replies.edge, peer, id)})
	if err != nil {
		return 0, err
	}
	switch n, _ := res.(int64); n {
	case 0:
		return ReplyUnknown, nil
	case 1:
		return ReplyTaken, nil
	case 2:
		return ReplyAnswered, nil
	}
	return 0, s.fail(fmt.Errorf("take reply: unexpected reply %v", res))
}

// ForgetReply ends this edge's wait for peer's exchange id: a reply that
// comes later, at any edge, is unknown.
func (s *Store) ForgetReply(ctx context.Context, peer, id string) error {
	if !s.Asking(time.Now()) {
		return ErrUnavailable
	}
	_, err := s.run(ctx, time.Now().Add(s.timeout), time.Time{}, forgetReplyScript,
		[]string{s.replyKey(s.replies.edge, peer, id)})
	return err
}

// RelayReply hands peer's reply body for the exchange id to the edge
// that waits for it, named edge: ReplyTaken with the Prepare's condition
// (for the caller to tell its peer whether the fulfillment was right),
// or why not.
func (s *Store) RelayReply(ctx context.Context, edge, peer, id string, body []byte) (ReplyResult, []byte, error) {
	if !validReplyEdge(edge) {
		return 0, nil, ErrBadReplyEdge
	}
	if !s.Asking(time.Now()) {
		return 0, nil, ErrUnavailable
	}
	res, err := s.run(ctx, time.Now().Add(s.timeout), time.Time{}, relayReplyScript,
		[]string{s.replyKey(edge, peer, id)}, s.publishCommand(), s.replyChannel(edge), encodeRelayed(peer, id, body))
	if err != nil {
		return 0, nil, err
	}
	a, _ := res.([]any)
	n := int64(-1)
	if len(a) > 0 {
		n, _ = a[0].(int64)
	}
	switch n {
	case 0:
		return ReplyUnknown, nil, nil
	case 1:
		if len(a) == 2 {
			condition, _ := a[1].(string)
			return ReplyTaken, []byte(condition), nil
		}
	case 2:
		return ReplyAnswered, nil, nil
	case 3:
		return ReplyNoListener, nil, nil
	}
	return 0, nil, s.fail(fmt.Errorf("relay reply: unexpected reply %v", res))
}

// validReplyEdge reports whether edge is a name ReplyEdge could have
// made: it becomes part of a key, whose hash tag it must not change.
func validReplyEdge(edge string) bool {
	if len(edge) != replyEdgeLen {
		return false
	}
	_, err := hex.DecodeString(edge)
	return err == nil
}

func (s *Store) publishCommand() string {
	if _, ok := s.client.(*redis.ClusterClient); ok {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// ListenReplies starts, once per store, this edge's listening for the
// replies other edges relay to it, each handed to deliver in turn (it
// must not block). The subscription reconnects by itself; until it is
// up, other edges answer such replies 503 and their peers try again.
func (s *Store) ListenReplies(deliver func(peer, id string, body []byte)) {
	s.replies.listen.Do(func() {
		channel := s.replyChannel(s.replies.edge)
		if _, ok := s.client.(*redis.ClusterClient); ok {
			s.replies.pubsub = s.client.SSubscribe(context.Background(), channel)
		} else {
			s.replies.pubsub = s.client.Subscribe(context.Background(), channel)
		}
		go s.receiveReplies(deliver)
	})
}

func (s *Store) receiveReplies(deliver func(peer, id string, body []byte)) {
	defer close(s.replies.done)
	for m := range s.replies.pubsub.Channel() {
		peer, id, body, err := decodeRelayed(m.Payload)
		if err != nil {
			// Only an edge of another version could publish this.
			s.logger.Warn("shared store: a relayed reply that cannot be read", zap.Error(err))
			continue
		}
		deliver(peer, id, body)
	}
}

// stopListening ends the subscription, if any.
func (r *replies) stopListening() {
	if r.pubsub == nil {
		return
	}
	r.pubsub.Close()
	<-r.done
}

// A relayed reply is the peer's name with its length (a uvarint), the
// Request-Id (36 bytes) and the body.
const relayedIDLen = 36

func encodeRelayed(peer, id string, body []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(peer)+len(id)+len(body)), uint64(len(peer)))
	b = append(b, peer...)
	b = append(b, id...)
	return append(b, body...)
}

func decodeRelayed(m string) (peer, id string, body []byte, err error) {
	n, k := binary.Uvarint([]byte(m[:min(len(m), binary.MaxVarintLen64)]))
	if k <= 0 || uint64(len(m)-k) < n+relayedIDLen {
		return "", "", nil, fmt.Errorf("%d bytes", len(m))
	}
	m = m[k:]
	return m[:n], m[n : n+relayedIDLen], []byte(m[n+relayedIDLen:]), nil
}
