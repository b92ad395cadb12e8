package handler

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestExpiryContextWithoutDone(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	expiry := time.Now().Add(30 * time.Millisecond)
	var ctx expiryContext
	ctx.init(parent, expiry)
	defer ctx.cancel()

	if d, ok := ctx.Deadline(); !ok || !d.Equal(expiry) {
		t.Fatalf("Deadline() = %v, %v; want %v, true", d, ok, expiry)
	}
	if ctx.Value(ctxKey{}) != "v" {
		t.Fatal("Value does not reach the parent's values")
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err() before the expiry = %v", err)
	}
	setClock(t, func() time.Time { return expiry })
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err() after the expiry = %v, want DeadlineExceeded", err)
	}
	if ctx.timed.Load() != nil {
		t.Fatal("a timer was made though nothing asked for Done")
	}
}

func TestExpiryContextDoneClosesAtExpiry(t *testing.T) {
	var ctx expiryContext
	expiry := time.Now().Add(30 * time.Millisecond)
	ctx.init(context.Background(), expiry)
	defer ctx.cancel()
	// A context made from it, as reverse_proxy's transport makes them,
	// ends with it.
	child, cancelChild := context.WithCancel(&ctx)
	defer cancelChild()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the derived context did not end at the expiry")
	}
	if time.Now().Before(expiry) {
		t.Fatal("Done closed before the expiry")
	}
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err() = %v, want DeadlineExceeded", err)
	}
	if err := child.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("derived Err() = %v, want DeadlineExceeded", err)
	}
}

func TestExpiryContextFollowsParent(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	var ctx expiryContext
	ctx.init(parent, time.Now().Add(time.Hour))
	defer ctx.cancel()
	cancelParent()
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err() after the peer went away = %v, want Canceled", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close with the parent")
	}
}

func TestExpiryContextCancelStopsIt(t *testing.T) {
	var ctx expiryContext
	ctx.init(context.Background(), time.Now().Add(time.Hour))
	done := ctx.Done()
	ctx.cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not end the context")
	}
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err() after cancel = %v, want Canceled", err)
	}
}
