// Package haproxytest runs a real HAProxy (Debian's package, which
// `make test` installs when it is missing) on loopback for a test: an L4
// balancer in front of several edges, as operators run them.
package haproxytest

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HAProxy is an haproxy process that lives as long as its test: one TCP
// listener balancing connections round-robin over the backends, and its
// statistics page.
type HAProxy struct {
	Addr     string // 127.0.0.1:port, where clients connect
	stats    string // the statistics page's URL
	backends []string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start runs haproxy in the foreground, in TCP mode, listening on
// 127.0.0.1:port and handing each connection to the next of backends
// (host:port) in turn (balance roundrobin), with its statistics page on
// 127.0.0.1:statsPort. The caller picks both ports. Start waits until
// both accept connections; haproxy is stopped when the test ends.
//
// The balancer is configured as docs/operations.md tells operators to,
// for a backend that dies (HAProxy 2.6, Debian 12's):
//
//   - retries 3 and option redispatch: a connection the backend refuses
//     is retried at once on the next backend. HAProxy waits before a
//     retry (min(timeout connect, 1 s)) only when it retries the same
//     server; with round-robin and more than one backend up, a
//     redispatch goes to another without waiting. Without redispatch,
//     HAProxy retries the dead backend three times a second apart (~3 s)
//     and then drops the connection; an ilp-connector peer gives up on a
//     route update after 1 s, and then sends no route update again (see
//     the integration tests' startCCPFleet).
//   - timeout connect 500ms: a backend that does not answer at all (a
//     dead host, off loopback) costs a connection half a second before
//     the redispatch, within ilp-connector's 1 s. On loopback a dead
//     port refuses at once.
//   - check inter 500ms fall 2 rise 1 (TCP connect checks): a dead
//     backend leaves the rotation within a second, and a restarted one
//     is back within half a second of listening. Until the checks see a
//     backend die, redispatch covers its turns, so detecting it faster
//     buys nothing; two failed checks rather than one, so that a single
//     check that times out on a loaded machine never takes a live
//     backend out of the rotation and skews the split a test asserts on
//     (a connect to a listening port on loopback is answered by the
//     kernel, so even one is unlikely). Checks are not sessions: the
//     statistics count the clients' connections alone (see Stats).
func Start(t testing.TB, port, statsPort int, backends []string) *HAProxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Fatal("haproxy not found: `make test` installs it (Debian package haproxy)")
		}
		bin = "/usr/sbin/haproxy" // not on the PATH of a user other than root
	}
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "\tserver b%d %s\n", i, b)
	}
	cfg := fmt.Sprintf(`global
	nbthread 1
	maxconn 4096

defaults
	timeout connect 500ms
	timeout client 60s
	timeout server 60s

listen balancer
	bind 127.0.0.1:%d
	mode tcp
	balance roundrobin
	retries 3
	option redispatch
	default-server check inter 500ms fall 2 rise 1
%s
listen stats
	bind 127.0.0.1:%d
	mode http
	stats enable
	stats uri /stats
`, port, servers.String(), statsPort)
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "haproxy.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	h := &HAProxy{
		Addr:     fmt.Sprintf("127.0.0.1:%d", port),
		stats:    fmt.Sprintf("http://127.0.0.1:%d/stats;csv", statsPort),
		backends: backends,
		cmd:      exec.Command(bin, "-f", path, "-db"),
		done:     make(chan struct{}),
	}
	h.cmd.Stdout, h.cmd.Stderr = log, log
	if err := h.cmd.Start(); err != nil {
		log.Close()
		t.Fatal(err)
	}
	go func() {
		h.cmd.Wait()
		log.Close()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
				t.Logf("haproxy log:\n%s", b)
			}
		}
	})
	for _, addr := range []string{h.Addr, fmt.Sprintf("127.0.0.1:%d", statsPort)} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-h.done:
				b, _ := os.ReadFile(logPath)
				t.Fatalf("haproxy exited before listening on %s:\n%s", addr, b)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy did not listen on %s within 10 s", addr)
			}
		}
	}
	return h
}

// Stats is the balancer's line of HAProxy's statistics, and each
// backend's.
type Stats struct {
	// Connections is how many of the clients' connections the balancer
	// handed on (the backend's stot): each once, wherever it went.
	Connections int
	// Backends is each backend's line, by its host:port as given to Start.
	Backends map[string]Backend
}

// Backend is a backend's line of HAProxy's statistics.
type Backend struct {
	// Sessions is how many connections HAProxy handed it (stot),
	// redispatched ones included: a connection it refused and HAProxy
	// redispatched counts here and at the backend it went on to.
	Sessions int
	// Redispatched is how many connections it refused (or did not
	// accept within timeout connect) that HAProxy handed to another
	// backend (wredis).
	Redispatched int
	// Status is what the health checks make of it: UP, DOWN, or a
	// transition such as "UP 1/2" (status).
	Status string
}

// Sessions returns the sessions each backend was handed so far (the
// statistics' stot), by its host:port as given to Start. A connection
// redispatched from a dead backend counts at both (see Backend.Sessions).
func (h *HAProxy) Sessions(t testing.TB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for b, s := range h.Stats(t).Backends {
		out[b] = s.Sessions
	}
	return out
}

// Stats reads HAProxy's statistics for the balancer.
func (h *HAProxy) Stats(t testing.TB) Stats {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(h.stats)
	if err != nil {
		t.Fatalf("haproxy statistics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("haproxy statistics: HTTP %d, %v", res.StatusCode, err)
	}
	// "# pxname,svname,qcur,qmax,scur,smax,slim,stot,...", then one row
	// per frontend, server and backend.
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(body), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("haproxy statistics: %v in %q", err, body)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "stot", "wredis", "status"} {
		if _, ok := col[name]; !ok {
			t.Fatalf("haproxy statistics: no %s column in %q", name, body)
		}
	}
	px, sv, stot, wredis, status := col["pxname"], col["svname"], col["stot"], col["wredis"], col["status"]
	count := func(row []string, c int) int {
		if row[c] == "" {
			return 0
		}
		n, err := strconv.Atoi(row[c])
		if err != nil {
			t.Fatalf("haproxy statistics: %s %q of %s", rows[0][c], row[c], row[sv])
		}
		return n
	}
	out := Stats{Connections: -1, Backends: map[string]Backend{}}
	for _, row := range rows[1:] {
		if len(row) <= max(px, sv, stot, wredis, status) || row[px] != "balancer" {
			continue
		}
		if row[sv] == "BACKEND" {
			out.Connections = count(row, stot)
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(row[sv], "b"))
		if !strings.HasPrefix(row[sv], "b") || err != nil || i >= len(h.backends) {
			continue // FRONTEND
		}
		out.Backends[h.backends[i]] = Backend{
			Sessions:     count(row, stot),
			Redispatched: count(row, wredis),
			Status:       row[status],
		}
	}
	if out.Connections < 0 || len(out.Backends) != len(h.backends) {
		t.Fatalf("haproxy statistics: %d of %d backends, and the balancer's line (%v), in %q",
			len(out.Backends), len(h.backends), out.Connections >= 0, body)
	}
	return out
}
