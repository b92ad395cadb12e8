package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux reports these fields in USER_HZ, which is 100 on every
// architecture Go runs on.
const clockTicks = 100

// process is a server the harness started in its own process group, so
// that a master and its workers (nginx) are measured and stopped together.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string // path of its combined stdout and stderr
	done chan struct{}
}

// startProcess starts bin with args in a new process group, its output
// going to a file in dir.
func startProcess(dir, name, bin string, args ...string) (*process, error) {
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
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the whole process group: SIGTERM, then SIGKILL after 5 s.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
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

// logTail returns the last lines the process wrote, for error messages.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// usage is the resources used so far by every process in a group.
type usage struct {
	cpu    time.Duration // utime + stime
	peakKB int64         // sum of the processes' VmHWM
}

// groupUsage reads /proc for every live process whose process group is
// pgid. Threads are included in their process's figures.
func groupUsage(pgid int) (usage, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		group, ticks, ok := parseStat(stat)
		if !ok || group != pgid {
			continue
		}
		u.cpu += time.Duration(ticks) * time.Second / clockTicks
		u.peakKB += peakRSS(pid)
	}
	return u, nil
}

// parseStat returns the process group and utime+stime (in clock ticks)
// from the contents of /proc/<pid>/stat. The command name, field 2, may
// contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(stat []byte) (pgrp int, ticks int64, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After ")": state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	pgrp, err1 := strconv.Atoi(f[2])
	utime, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return pgrp, utime + stime, true
}

func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// waitReady calls check until it succeeds, the process exits, or timeout.
func waitReady(ctx context.Context, p *process, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, err, p.logTail())
		}
		if time.Now().After(deadline) {
			msg := err.Error()
			if p != nil {
				msg += "\n" + p.logTail()
			}
			return fmt.Errorf("not ready after %v: %s", timeout, msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
