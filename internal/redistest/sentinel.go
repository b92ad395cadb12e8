package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentinel is a Redis master, one replica of it and three redis-sentinel
// processes watching them, all on loopback, that live as long as their
// test: the topology of operators who run Redis with automatic failover.
type Sentinel struct {
	MasterName string   // the name the sentinels know the master by
	Sentinels  []string // host:port of the three sentinels

	t         testing.TB
	servers   []*proc // the first master and its replica, as started
	sentinels []*proc
}

// StartSentinel runs a master, a replica in sync with it and three
// sentinels that monitor it with a quorum of 2, and waits until every
// sentinel knows the master, the replica and the two other sentinels, so
// that a failover can happen as soon as the master goes.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	need(t, "redis-server", "redis-sentinel")
	dir := t.TempDir()
	s := &Sentinel{MasterName: "mymaster", t: t}

	master := launch(t, dir, "master", false, func(port int) []string {
		return append([]string{"redis-server"}, serverArgs(dir, port)...)
	})
	_, mport, _ := net.SplitHostPort(master.addr)
	replica := launch(t, dir, "replica", false, func(port int) []string {
		return append(append([]string{"redis-server"}, serverArgs(dir, port)...),
			"--replicaof", "127.0.0.1", mport)
	})
	s.servers = []*proc{master, replica}
	// A sentinel lists a replica only once the master's INFO names it, and
	// the master names it once it has synced: wait for that first.
	waitUntil(t, 10*time.Second, func() error {
		info, err := doString(replica.addr, "INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("master_link_status is not up")
		}
		return nil
	}, "replica %s not in sync with %s (logs: %s, %s)%s", replica.addr, master.addr, replica.log, master.log, tail(replica.log))

	for i := 1; i <= 3; i++ {
		name := "sentinel-" + strconv.Itoa(i)
		p := launch(t, dir, name, false, func(port int) []string {
			conf := filepath.Join(dir, name+"-"+strconv.Itoa(port)+".conf")
			// The sentinel rewrites this file (its id, the replicas and
			// sentinels it found, the current master), so it is its own.
			text := fmt.Sprintf(`bind 127.0.0.1
port %d
dir %q
# Addresses here are IPs; no DNS look-ups.
sentinel resolve-hostnames no
# Quorum 2 of 3: one sentinel alone cannot declare the master down.
sentinel monitor %[3]s 127.0.0.1 %[4]s 2
# Declared down after 1 s without an answer (default 30 s): the test
# waits for the failover.
sentinel down-after-milliseconds %[3]s 1000
# A failover that did not complete can be retried after twice this
# (default 3 min).
sentinel failover-timeout %[3]s 5000
sentinel parallel-syncs %[3]s 1
`, port, dir, s.MasterName, mport)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"redis-sentinel", conf}
		})
		s.sentinels = append(s.sentinels, p)
		s.Sentinels = append(s.Sentinels, p.addr)
	}
	// Sentinels find the replica in the master's INFO, which each asks for
	// on connecting, and each other through hello messages every 2 s on
	// the master's __sentinel__:hello channel.
	for _, p := range s.sentinels {
		waitUntil(t, 10*time.Second, func() error { return s.knows(p.addr, master.addr) },
			"%s at %s does not know the whole topology (log: %s)", p.name, p.addr, p.log)
	}
	return s
}

// knows tells whether the sentinel at addr reports master as the master,
// one replica that is up and two other sentinels.
func (s *Sentinel) knows(addr, master string) error {
	m, err := s.masterFrom(addr)
	if err != nil {
		return err
	}
	if m != master {
		return fmt.Errorf("master is %s, not %s", m, master)
	}
	reps, err := doArray(addr, "SENTINEL", "replicas", s.MasterName)
	if err != nil {
		return err
	}
	if len(reps) != 1 {
		return fmt.Errorf("%d replicas", len(reps))
	}
	if f := field(reps[0], "flags"); f != "slave" {
		return fmt.Errorf("replica flags %q", f)
	}
	sens, err := doArray(addr, "SENTINEL", "sentinels", s.MasterName)
	if err != nil {
		return err
	}
	if len(sens) != 2 {
		return fmt.Errorf("%d other sentinels", len(sens))
	}
	return nil
}

// masterFrom asks the sentinel at addr for the master's address.
func (s *Sentinel) masterFrom(addr string) (string, error) {
	hp, err := doArray(addr, "SENTINEL", "get-master-addr-by-name", s.MasterName)
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("get-master-addr-by-name: %v", hp)
	}
	host, _ := hp[0].(string)
	port, _ := hp[1].(string)
	return net.JoinHostPort(host, port), nil
}

// Master returns host:port of the current master, as the first sentinel
// that answers reports it (during a failover, sentinels may differ: see
// WaitFailover).
func (s *Sentinel) Master() string {
	s.t.Helper()
	var errs []error
	for _, addr := range s.Sentinels {
		m, err := s.masterFrom(addr)
		if err == nil {
			return m
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	s.t.Fatalf("no sentinel reports the master: %v (logs: %s)", errors.Join(errs...), s.logs())
	return ""
}

// KillMaster stops the redis-server that is master now at once
// (SIGKILL), as a crash would.
func (s *Sentinel) KillMaster() {
	s.t.Helper()
	m := s.Master()
	for _, p := range s.servers {
		if p.addr == m {
			p.kill()
			return
		}
	}
	s.t.Fatalf("the sentinels' master %s is none of the servers started", m)
}

// WaitFailover waits until every sentinel reports a master other than
// old and that master answers as one (ROLE), and returns how long that
// took from the call. It fails the test after within.
func (s *Sentinel) WaitFailover(t testing.TB, old string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, within, func() error {
		var m string
		for _, addr := range s.Sentinels {
			n, err := s.masterFrom(addr)
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			if n == old {
				return fmt.Errorf("sentinel %s still reports %s", addr, old)
			}
			if m != "" && n != m {
				return fmt.Errorf("sentinels report %s and %s", m, n)
			}
			m = n
		}
		role, err := doArray(m, "ROLE")
		if err != nil {
			return fmt.Errorf("new master %s: %w", m, err)
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("new master %s has role %v", m, role)
		}
		return nil
	}, "no failover from %s within %v (logs: %s)", old, within, s.logs())
	return time.Since(start)
}

// logs lists the log files of the topology, for error messages.
func (s *Sentinel) logs() string {
	var l []string
	for _, p := range append(append([]*proc(nil), s.servers...), s.sentinels...) {
		l = append(l, p.log)
	}
	return strings.Join(l, ", ")
}

// field returns the value of name in a reply that is a flat list of
// names and values, as SENTINEL replicas gives for each replica.
func field(v any, name string) string {
	l, _ := v.([]any)
	for i := 0; i+1 < len(l); i += 2 {
		if l[i] == name {
			s, _ := l[i+1].(string)
			return s
		}
	}
	return ""
}

// What follows serves both Sentinel and Cluster (cluster.go).

// serverArgs are the arguments of every redis-server of a topology.
func serverArgs(dir string, port int) []string {
	return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		// No persistence: a test's data dies with it. A replica still
		// stores the snapshot of a full sync, in a file of its own.
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--dbfilename", "dump-" + strconv.Itoa(port) + ".rdb",
		// A master waits 5 s by default before a diskless full sync, for
		// more replicas to share it; a replica must be in sync at once.
		"--repl-diskless-sync-delay", "0",
	}
}

// need fails the test when one of the programs is not installed.
func need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s not found: `make test` installs it (Debian packages redis-server, redis-sentinel, redis-tools)", p)
		}
	}
}

// proc is one redis-server or redis-sentinel process of a topology.
type proc struct {
	name   string // what it is in the topology, for messages
	addr   string // 127.0.0.1:port
	log    string // its stdout and stderr
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and been reaped
}

// kill stops the process at once (SIGKILL) and waits until it is gone; a
// second call does nothing.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// launch runs the command that argv gives for a free port, logging to
// dir/<name>-<port>.log, stops it at the test's end, and waits until it
// answers PING. If another process took the port meanwhile, it tries
// again with another. bus: see freePort.
func launch(t testing.TB, dir, name string, bus bool, argv func(port int) []string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := freePort(t, bus)
		p := &proc{
			name:   name,
			addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			log:    filepath.Join(dir, name+"-"+strconv.Itoa(port)+".log"),
			exited: make(chan struct{}),
		}
		log, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		args := argv(port)
		p.cmd = exec.Command(args[0], args[1:]...)
		p.cmd.Stdout, p.cmd.Stderr = log, log
		err = p.cmd.Start()
		log.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			p.cmd.Wait()
			close(p.exited)
		}()
		t.Cleanup(p.kill)
		err = p.waitUp(10 * time.Second)
		if err == nil {
			return p
		}
		if out, _ := os.ReadFile(p.log); attempt < 3 && strings.Contains(string(out), "Address already in use") {
			continue
		}
		t.Fatalf("%s on %s: %v (log: %s)%s", name, p.addr, err, p.log, tail(p.log))
	}
}

// tail returns the end of a log file for an error message, since the
// file goes with the test's directory when the test ends.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}

// waitUp waits until the process answers PING.
func (p *proc) waitUp(within time.Duration) error {
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.cmd.ProcessState)
		default:
		}
		if _, err := do(p.addr, "PING"); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within %v", within)
		}
	}
}

// waitUntil calls ok every 50 ms until it returns nil, and fails the test
// with the message and ok's last error if that takes longer than within.
func waitUntil(t testing.TB, within time.Duration, ok func() error, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf(format+": %v", append(args, err)...)
		}
	}
}

// busOffset is the distance from a cluster node's port to its cluster bus
// port, the default that redis-server applies.
const busOffset = 10000

var (
	portMu   sync.Mutex
	portUsed = map[int]bool{} // handed out by freePort in this process
)

// freePort returns a loopback port in 20000–32000 that nothing listens
// on now and that this process has not handed out before, so that the
// ports picked for one topology differ even before their servers bind
// them. Not 0 and not above 32767: the kernel's ephemeral range (from
// 32768 on Linux) is where outgoing connections get their local ports, so
// a port seen free there can be taken before the server binds it. With
// bus, port+busOffset (a cluster node's bus port) is free and below 32000
// too.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	const lo, hi = 20000, 32000
	top := hi
	if bus {
		top = hi - busOffset
	}
	portMu.Lock()
	defer portMu.Unlock()
	for range 200 {
		ports := []int{lo + rand.IntN(top-lo)}
		if bus {
			ports = append(ports, ports[0]+busOffset)
		}
		free := true
		for _, p := range ports {
			if portUsed[p] {
				free = false
				break
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			for _, p := range ports {
				portUsed[p] = true
			}
			return ports[0]
		}
	}
	t.Fatalf("no free loopback port in %d–%d", lo, hi)
	return 0
}

// respError is an error reply of a server (-ERR …, -MOVED …).
type respError string

func (e respError) Error() string { return string(e) }

// do sends one command to addr over a connection of its own, in RESP2,
// and returns the reply: a string (simple or bulk), an int64, nil, a
// []any of those, or a respError as the error. Enough for the admin
// commands of the helpers, without go-redis' retries and routing.
func do(addr string, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	v, err := readReply(bufio.NewReader(c))
	if err == nil {
		if e, ok := v.(respError); ok {
			return nil, e
		}
	}
	return v, err
}

// readReply reads one RESP2 reply; an error reply is returned as a value,
// so that errors inside arrays (EXEC) do not end the reading.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return respError(rest), nil
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$', '*':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("bad reply line %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		if kind == '$' {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return nil, err
			}
			return string(buf[:n]), nil
		}
		l := make([]any, n)
		for i := range l {
			if l[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line)
}

// doString is do for a command whose reply is a string.
func doString(addr string, args ...string) (string, error) {
	v, err := do(addr, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: reply %v is not a string", args[0], v)
	}
	return s, nil
}

// doArray is do for a command whose reply is an array.
func doArray(addr string, args ...string) ([]any, error) {
	v, err := do(addr, args...)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: reply %v is not an array", args[0], v)
	}
	return l, nil
}
