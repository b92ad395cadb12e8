package redistest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSlotOf(t *testing.T) {
	// The check value of CRC-16/XMODEM, and examples of the Redis Cluster
	// specification for hash tags.
	if c := crc16("123456789"); c != 0x31c3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", c)
	}
	for key, same := range map[string]string{
		"{user1000}.following": "user1000",
		"{user1000}.followers": "user1000",
		"foo{}{bar}":           "foo{}{bar}", // empty tag: the whole key
		"foo{{bar}}zap":        "{bar",
		"foo{bar}{zap}":        "bar",
		"{}":                   "{}",
		"a{b":                  "a{b",
	} {
		if got, want := SlotOf(key), int(crc16(same))%slots; got != want {
			t.Errorf("SlotOf(%q) = %d, want %d (slot of %q)", key, got, want, same)
		}
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t)
	t.Logf("3-node cluster up in %v", time.Since(start).Round(time.Millisecond))

	// SlotOf agrees with the server.
	for _, k := range []string{"", "a", "foo", "bar", "key:0", "caddy-ilp:peer:g.alice",
		"{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{caddy-ilp}:x", "\x00\xff{\x01}", "héllo"} {
		v, err := do(c.Addrs[0], "CLUSTER", "KEYSLOT", k)
		if err != nil {
			t.Fatal(err)
		}
		if got := SlotOf(k); int64(got) != v.(int64) {
			t.Errorf("SlotOf(%q) = %d, CLUSTER KEYSLOT says %d", k, got, v)
		}
	}

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	owners := map[string]bool{}
	for i := range 30 {
		k := "key:" + strconv.Itoa(i)
		if err := rdb.Set(ctx, k, "v"+strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, owner, err := c.nodesView(c.Addrs[0], SlotOf(k))
		if err != nil {
			t.Fatal(err)
		}
		owners[owner] = true
	}
	if len(owners) != 3 {
		t.Errorf("30 keys on %d nodes, want 3", len(owners))
	}

	// More keys in the slot to move than one GETKEYSINSLOT batch takes.
	const key = "key:0"
	slot := SlotOf(key)
	for i := range 250 {
		if err := rdb.Set(ctx, fmt.Sprintf("{%s}.%d", key, i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_, from, err := c.nodesView(c.Addrs[0], slot)
	if err != nil {
		t.Fatal(err)
	}
	to := c.Addrs[0]
	if to == from {
		to = c.Addrs[1]
	}
	start = time.Now()
	c.MoveSlot(t, slot, to)
	t.Logf("slot %d with 251 keys moved from %s to %s in %v", slot, from, to, time.Since(start).Round(time.Millisecond))

	// The client follows the MOVED of the former owner.
	if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "v0" {
		t.Fatalf("GET %s after MoveSlot: %q, %v", key, v, err)
	}
	for i := range 30 {
		k := "key:" + strconv.Itoa(i)
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "v"+strconv.Itoa(i) {
			t.Errorf("GET %s: %q, %v", k, v, err)
		}
	}
	// The keys are on the new owner, and the former one sends clients there.
	if n, err := do(to, "CLUSTER", "COUNTKEYSINSLOT", strconv.Itoa(slot)); err != nil || n != int64(251) {
		t.Errorf("COUNTKEYSINSLOT %d on %s: %v, %v; want 251", slot, to, n, err)
	}
	if _, err := do(from, "GET", key); err == nil || err.Error() != fmt.Sprintf("MOVED %d %s", slot, to) {
		t.Errorf("GET %s on former owner %s: %v, want MOVED %d %s", key, from, err, slot, to)
	}
	if v, err := rdb.Get(ctx, "{key:0}.249").Result(); err != nil || v != "249" {
		t.Errorf("GET {key:0}.249: %q, %v", v, err)
	}
}
