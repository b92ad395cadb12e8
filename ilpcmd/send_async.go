package ilpcmd

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// asyncOptions are `caddy ilp send --async`'s callback flags.
type asyncOptions struct {
	listen string // --callback-listen: host:port to listen on
	url    string // --callback-url: the Callback-Url to send; "" for the listener's own
	token  string // --callback-token: the Bearer token a reply must come with; "" for any
}

// sendAsync sends req (the Prepare, with its Authorization) as RFC 35
// draft 3 has it: it listens for the callback, POSTs the Prepare with a
// fresh Request-Id and the Callback-Url, wants 202, and waits until
// expiresAt for the Fulfill or Reject on the callback, which it prints as
// the synchronous mode does.
func sendAsync(cmd *cobra.Command, client *http.Client, req *http.Request, cond []byte, expiresAt time.Time, o asyncOptions) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--callback-listen: %w", err)
	}
	id := uuid.NewString()
	callbackURL := o.url
	if callbackURL == "" {
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok || addr.IP.IsUnspecified() {
			ln.Close()
			return fmt.Errorf("--callback-listen %s is no address the edge can be sent to: give --callback-url", o.listen)
		}
		callbackURL = "http://" + addr.String() + "/callback/" + id
	}
	cb := &callbackListener{id: id, token: o.token, log: cmd.ErrOrStderr(), replies: make(chan callbackReply, 1)}
	srv := &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	defer func() {
		// Let the 200 to the reply go out before the process exits.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}()

	req.Header.Set("Request-Id", id)
	req.Header.Set("Callback-Url", callbackURL)
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	accepted := time.Now()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusAccepted {
		err := httpError(res.StatusCode, accepted.Sub(start), body)
		if res.StatusCode == http.StatusOK {
			err = fmt.Errorf("%w: a synchronous answer, not 202 (is the peer's mode sync?)", err)
		}
		return fmt.Errorf("%w (Request-Id %s, Callback-Url %s)", err, id, callbackURL)
	}
	cb.logf("HTTP 202 after %v; waiting for the reply to Request-Id %s at %s until the Prepare expires (%s)\n",
		accepted.Sub(start).Round(time.Microsecond), id, callbackURL, expiresAt.UTC().Format(time.RFC3339Nano))

	expired := time.NewTimer(time.Until(expiresAt))
	defer expired.Stop()
	var reply callbackReply
	select {
	case reply = <-cb.replies:
	case <-req.Context().Done():
		return req.Context().Err()
	case <-expired.C:
		select {
		case reply = <-cb.replies: // came as the Prepare expired
		default:
			msg := fmt.Sprintf("no reply came by callback before the Prepare expired, %v after the 202 (Request-Id %s, Callback-Url %s)",
				time.Since(accepted).Round(time.Millisecond), id, callbackURL)
			if refused := cb.refusals(); len(refused) > 0 {
				msg += fmt.Sprintf("; the listener refused %d POST(s): %s", len(refused), strings.Join(refused, "; "))
			}
			return errors.New(msg)
		}
	}
	// The reply may come before the 202 is read: it is then 0s after it.
	after := max(reply.at.Sub(accepted), 0)
	return printAnswer(cmd.OutOrStdout(), reply.packet, cond, sendResult{
		Elapsed:            reply.at.Sub(start).Round(time.Microsecond).String(),
		ByCallbackAfter202: after.Round(time.Microsecond).String(),
	})
}

// callbackReply is the decoded Fulfill or Reject taken by the callback
// listener, and when it came.
type callbackReply struct {
	packet any // decodedFulfill or decodedReject
	at     time.Time
}

// callbackListener takes the one reply to Request-Id id: a POST with that
// Request-Id (400 otherwise) and, when token is set, Authorization:
// Bearer <token> (401 otherwise), whose body is a Fulfill or Reject
// (400 otherwise). The first such reply is answered 200 and sent on
// replies; any later one gets 400, as the id is no longer in flight.
type callbackListener struct {
	id, token string
	replies   chan callbackReply // buffered: one reply

	mu      sync.Mutex
	log     io.Writer // for what the listener refuses, as it happens
	refused []string
	taken   bool
}

func (c *callbackListener) logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.log, format, args...)
}

func (c *callbackListener) refusals() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.refused...)
}

func (c *callbackListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, why := c.take(r)
	if status != http.StatusOK {
		c.mu.Lock()
		c.refused = append(c.refused, fmt.Sprintf("%d, %s", status, why))
		fmt.Fprintf(c.log, "callback: %s %s from %s refused with %d: %s\n", r.Method, r.URL.RequestURI(), r.RemoteAddr, status, why)
		c.mu.Unlock()
		switch status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", "Bearer")
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", http.MethodPost)
		}
		http.Error(w, why, status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// take checks a POST to the callback and, if it is the reply, sends it
// on c.replies; it returns the status to answer and, for a refusal, why.
func (c *callbackListener) take(r *http.Request) (int, string) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "not a POST"
	}
	if c.token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+c.token)) != 1 {
		return http.StatusUnauthorized, "Authorization is not Bearer <--callback-token>"
	}
	if got := r.Header.Get("Request-Id"); !strings.EqualFold(got, c.id) {
		return http.StatusBadRequest, fmt.Sprintf("Request-Id %q is not the one in flight", got)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return http.StatusBadRequest, "reading the body: " + err.Error()
	}
	v, err := decodePacket(body)
	if err == nil {
		switch v.(type) {
		case decodedFulfill, decodedReject:
		default:
			err = errors.New("a Prepare")
		}
	}
	if err != nil {
		return http.StatusBadRequest, "the body is not an ILP Fulfill or Reject: " + err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.taken {
		return http.StatusBadRequest, "the reply to this Request-Id was taken already"
	}
	c.taken = true
	c.replies <- callbackReply{packet: v, at: time.Now()}
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		fmt.Fprintf(c.log, "callback: note: the reply came with Content-Type %q; RFC 35 wants application/octet-stream\n", ct)
	}
	return http.StatusOK, ""
}
