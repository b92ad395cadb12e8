package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux reports these fields in USER_HZ, which is 100 on every
// architecture Go runs on.
const clockTicks = 100

// usage is the resources used so far by every process in a group.
type usage struct {
	cpu    time.Duration // utime + stime
	sys    time.Duration // stime: in the kernel, on the process's behalf
	peakKB int64         // sum of the processes' VmHWM
	// The times a thread of the group left its CPU, for a wait
	// (voluntary: a read with nothing to read, a sleep) or preempted: each
	// is a trip through the scheduler, and on a virtual machine one of the
	// dearest things a proxy does per packet.
	switches int64
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
		group, utime, stime, ok := parseStat(stat)
		if !ok || group != pgid {
			continue
		}
		u.cpu += time.Duration(utime+stime) * time.Second / clockTicks
		u.sys += time.Duration(stime) * time.Second / clockTicks
		u.peakKB += peakRSS(pid)
		u.switches += contextSwitches(pid)
	}
	return u, nil
}

// contextSwitches sums the context switches of pid's threads, from
// /proc/<pid>/task/<tid>/status (the process's own status counts only
// its first thread's). A thread that exited meanwhile takes its count
// with it; a Go runtime's threads, nginx's and HAProxy's live as long as
// their process.
func contextSwitches(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, t := range tasks {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		n += parseSwitches(status)
	}
	return n
}

// parseSwitches returns voluntary_ctxt_switches + nonvoluntary_ctxt_switches
// from the contents of a /proc status file.
func parseSwitches(status []byte) int64 {
	var n int64
	for line := range strings.Lines(string(status)) {
		name, value, ok := strings.Cut(line, ":")
		if ok && (name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches") {
			v, _ := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			n += v
		}
	}
	return n
}

// parseStat returns the process group, utime and stime (in clock ticks)
// from the contents of /proc/<pid>/stat. The command name, field 2, may
// contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(stat []byte) (pgrp int, utime, stime int64, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	// After ")": state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, 0, 0, false
	}
	pgrp, err1 := strconv.Atoi(f[2])
	utime, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return pgrp, utime, stime, true
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
