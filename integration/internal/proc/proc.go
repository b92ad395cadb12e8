// Package proc starts and stops the servers that the benchmark harness and
// the demo run: each in its own process group, with its output in a file
// and Caddy's storage kept in the run's directory.
package proc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a server started in its own process group, so that a master
// and its workers (nginx) are measured and stopped together.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of its combined stdout and stderr
	done chan struct{}
}

// Start starts bin with args in a new process group, in dir, its output
// going to a file in dir. env is added to the environment.
func Start(dir, name string, env []string, bin string, args ...string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Caddy writes its autosave and storage under $HOME/$XDG_*; keep
	// them in the run's directory.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// StartStub starts the stub connector (integration/stubconnector) built
// at bin and returns it with the address it listens on.
func StartStub(ctx context.Context, dir, bin, name string) (*Process, string, error) {
	p, err := Start(dir, name, nil, bin, "-name", name)
	if err != nil {
		return nil, "", err
	}
	var addr string
	err = p.WaitReady(ctx, 10*time.Second, func() error {
		text, _ := os.ReadFile(p.Log)
		a, ok := strings.CutPrefix(strings.TrimSpace(string(text)), "READY ")
		if !ok {
			return errors.New("no READY line yet")
		}
		addr = a
		return nil
	})
	if err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, addr, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the whole process group: SIGTERM, then SIGKILL after 5 s.
func (p *Process) Stop() {
	pgid := p.Cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Workers that outlived their master (nginx) are still in the group.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// Kill ends the process group at once, as a crash would.
func (p *Process) Kill() {
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// LogTail returns the last lines the process wrote, for error messages.
func (p *Process) LogTail() string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// WaitReady calls check until it succeeds, the process exits, or timeout.
// A nil p waits for something the harness did not start.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, err, p.LogTail())
		}
		if time.Now().After(deadline) {
			if p == nil {
				return fmt.Errorf("not ready after %v: %v", timeout, err)
			}
			return fmt.Errorf("%s not ready after %v: %v\n%s", p.Name, timeout, err, p.LogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Ports are taken from [portLow, portHigh): below the kernel's ephemeral
// range (32768 and up by default), from which outgoing connections take
// their local ports, so that a port found free is not taken by a client
// (a peer that opens a connection per packet opens hundreds) before its
// server binds it. internal/redistest takes its ports from 20000 up.
const portLow, portHigh = 10000, 20000

var (
	portMu   sync.Mutex
	portUsed = map[int]bool{} // handed out by this process: never twice
)

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago, none of which this process was given before: all n are held open
// until every one is found.
func FreePorts(n int) ([]int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("no free loopback port in %d–%d", portLow, portHigh)
		}
		p := portLow + rand.IntN(portHigh-portLow)
		if portUsed[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
		portUsed[p] = true
	}
	return ports, nil
}
