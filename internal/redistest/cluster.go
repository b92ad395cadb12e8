package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is three Redis Cluster masters on loopback, without replicas,
// that share the 16384 hash slots and live as long as their test: the
// topology of operators who shard Redis.
type Cluster struct {
	Addrs []string // host:port of the three masters

	t     testing.TB
	nodes []*proc
}

// StartCluster runs three cluster-enabled redis-servers, joins them as
// `redis-cli --cluster create` does (which gives each a third of the
// slots), and waits until every node says the cluster is ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	need(t, "redis-server", "redis-cli")
	dir := t.TempDir()
	c := &Cluster{t: t}
	for i := 1; i <= 3; i++ {
		p := launch(t, dir, "node-"+strconv.Itoa(i), true, func(port int) []string {
			return append(append([]string{"redis-server"}, serverArgs(dir, port)...),
				"--cluster-enabled", "yes",
				// Where a node keeps its id and its view of the cluster;
				// one per node, in the test's directory.
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
				// A node unreachable for 2 s (default 15 s) is marked as
				// failing and the cluster as down, so that tests that
				// stop a node see it within their time.
				"--cluster-node-timeout", "2000")
		})
		c.nodes = append(c.nodes, p)
		c.Addrs = append(c.Addrs, p.addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	logName := filepath.Join(dir, "cluster-create.log")
	log, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "redis-cli", append(append([]string{"--cluster", "create"}, c.Addrs...),
		"--cluster-yes")...) // no question whether the slot layout is fine
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v (log: %s; nodes' logs: %s)%s", err, logName, c.logs(), tail(logName))
	}
	for _, p := range c.nodes {
		waitUntil(t, 10*time.Second, func() error {
			info, err := doString(p.addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok\r\n") {
				return fmt.Errorf("cluster_state is not ok")
			}
			return nil
		}, "%s at %s (log: %s)", p.name, p.addr, p.log)
	}
	return c
}

// MoveSlot migrates a hash slot and its keys from its owner to the node
// at to (one of Addrs), the way redis-cli's resharding does, and waits
// until every node says that to owns it. Clients that still go to the
// former owner get MOVED.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to string) {
	t.Helper()
	if slot < 0 || slot >= slots {
		t.Fatalf("MoveSlot: slot %d out of 0–%d", slot, slots-1)
	}
	if !c.has(to) {
		t.Fatalf("MoveSlot: %s is none of the nodes %v", to, c.Addrs)
	}
	ids, from, err := c.nodesView(to, slot)
	if err != nil {
		t.Fatalf("MoveSlot: CLUSTER NODES on %s: %v", to, err)
	}
	if from == to {
		t.Fatalf("MoveSlot: slot %d is on %s already", slot, to)
	}
	if !c.has(from) {
		t.Fatalf("MoveSlot: slot %d is on %q, none of the nodes %v", slot, from, c.Addrs)
	}
	s := strconv.Itoa(slot)
	must := func(addr string, args ...string) any {
		t.Helper()
		v, err := do(addr, args...)
		if err != nil {
			t.Fatalf("MoveSlot: %s on %s: %v", strings.Join(args, " "), addr, err)
		}
		return v
	}
	// The destination first, so that when the source starts answering ASK
	// for the keys it no longer has, the destination accepts them.
	must(to, "CLUSTER", "SETSLOT", s, "IMPORTING", ids[from])
	must(from, "CLUSTER", "SETSLOT", s, "MIGRATING", ids[to])
	host, port, _ := net.SplitHostPort(to)
	for {
		keys, _ := must(from, "CLUSTER", "GETKEYSINSLOT", s, "100").([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}
		for _, k := range keys {
			args = append(args, k.(string))
		}
		must(from, args...)
	}
	// The destination first again: it takes the slot with a new config
	// epoch, which then wins over the source's claim wherever gossip
	// carries the two; the others are told directly, not to wait for it.
	order := []string{to, from}
	for _, a := range c.Addrs {
		if a != to && a != from {
			order = append(order, a)
		}
	}
	for _, a := range order {
		must(a, "CLUSTER", "SETSLOT", s, "NODE", ids[to])
	}
	for _, a := range c.Addrs {
		waitUntil(t, 5*time.Second, func() error {
			_, owner, err := c.nodesView(a, slot)
			if err != nil {
				return err
			}
			if owner != to {
				return fmt.Errorf("owner is %s", owner)
			}
			return nil
		}, "MoveSlot: %s does not see slot %d on %s", a, slot, to)
	}
}

// nodesView returns, as the node at addr sees the cluster (CLUSTER
// NODES), the id of every node by address and the address of the
// owner of slot ("" if none).
func (c *Cluster) nodesView(addr string, slot int) (ids map[string]string, owner string, err error) {
	text, err := doString(addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, "", err
	}
	ids = map[string]string{}
	// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent>
	// <pong-recv> <config-epoch> <link-state> <slot> <slot> …, where a
	// slot is n or n-m, or [n->-id] / [n-<-id] for one being migrated.
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, "", fmt.Errorf("CLUSTER NODES line %q", line)
		}
		a, _, _ := strings.Cut(f[1], "@")
		ids[a] = f[0]
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, "", fmt.Errorf("CLUSTER NODES slots %q", r)
			}
			if l <= slot && slot <= h {
				owner = a
			}
		}
	}
	return ids, owner, nil
}

// Owner is the address of the node that serves slot, as the first node
// sees the cluster.
func (c *Cluster) Owner(t testing.TB, slot int) string {
	t.Helper()
	_, owner, err := c.nodesView(c.Addrs[0], slot)
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	return owner
}

func (c *Cluster) has(addr string) bool {
	for _, a := range c.Addrs {
		if a == addr {
			return true
		}
	}
	return false
}

// logs lists the log files of the nodes, for error messages.
func (c *Cluster) logs() string {
	var l []string
	for _, p := range c.nodes {
		l = append(l, p.log)
	}
	return strings.Join(l, ", ")
}

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// SlotOf returns the hash slot of key as Redis Cluster computes it:
// CRC16 (XMODEM) of the key modulo 16384, or of its hash tag only, the
// part between the first { and the first } after it, if that is not
// empty, so that keys with the same tag share a slot.
func SlotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % slots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection), the variant of the Redis Cluster specification.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
