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
// There are no health checks: every connection goes to the next backend
// in the rotation, whatever state it is in, so that a test decides what
// each backend gets. A check that timed out on a loaded machine would
// take a backend out of the rotation for a while, and skew the split a
// test asserts on.
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
	timeout connect 2s
	timeout client 60s
	timeout server 60s

listen balancer
	bind 127.0.0.1:%d
	mode tcp
	balance roundrobin
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

// Sessions returns the sessions each backend was handed so far (the
// statistics' stot), by its host:port as given to Start.
func (h *HAProxy) Sessions(t testing.TB) map[string]int {
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
	px, sv, stot := col["pxname"], col["svname"], col["stot"]
	out := map[string]int{}
	for _, row := range rows[1:] {
		if len(row) <= max(px, sv, stot) || row[px] != "balancer" {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(row[sv], "b"))
		if !strings.HasPrefix(row[sv], "b") || err != nil || i >= len(h.backends) {
			continue // FRONTEND, BACKEND
		}
		if out[h.backends[i]], err = strconv.Atoi(row[stot]); err != nil {
			t.Fatalf("haproxy statistics: stot %q of %s", row[stot], row[sv])
		}
	}
	if len(out) != len(h.backends) {
		t.Fatalf("haproxy statistics: %d of %d backends in %q", len(out), len(h.backends), body)
	}
	return out
}
