package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSentinelFailover(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(start).Round(time.Millisecond))

	// As the shared store connects: a UniversalClient with a master name
	// is a failover client that asks the sentinels where the master is.
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        s.Sentinels,
		MasterName:   s.MasterName,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: make sure the replica has the key
	// before its master dies, so that it must survive the failover.
	if n, err := rdb.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}

	old := s.Master()
	s.KillMaster()
	took := s.WaitFailover(t, old, 20*time.Second)
	t.Logf("failover from %s to %s in %v", old, s.Master(), took.Round(time.Millisecond))

	now := s.Master()
	if now == old {
		t.Fatalf("master still %s", old)
	}
	direct := redis.NewClient(&redis.Options{Addr: now})
	t.Cleanup(func() { direct.Close() })
	role, err := direct.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "master" {
		t.Fatalf("ROLE on new master %s: %v, %v", now, role, err)
	}

	// The client finds the new master by itself; its first attempts may
	// still go to the dead one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Set(ctx, "after", "2", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		if v, err := direct.Get(ctx, k).Result(); err != nil || v != want {
			t.Errorf("GET %s on new master %s: %q, %v; want %q", k, now, v, err, want)
		}
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != want {
			t.Errorf("GET %s through the client: %q, %v; want %q", k, v, err, want)
		}
	}
}
