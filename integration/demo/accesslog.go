package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// accessEntry is the part of a Caddyfile.example access log line the
// demo checks: the ILP fields its log_append lines add.
type accessEntry struct {
	Logger      string  `json:"logger"`
	TS          float64 `json:"ts"`
	Destination string  `json:"ilp_destination"`
	Result      string  `json:"ilp_result"`
	Upstream    string  `json:"ilp_upstream"`
	Rerouted    bool    `json:"ilp_rerouted"`
}

// checkAccessLog reads Caddy's log and checks that the access log says
// what each round packet got and where it went: one fulfill line per
// Fulfill the peers got, each naming a connector; none on the killed
// connector after the kill, and some rerouted then.
func checkAccessLog(path string, fulfilled int, connectors []string, killed string, killedAt time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lines, rerouted := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e accessEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || !strings.HasPrefix(e.Logger, "http.log.access") ||
			!strings.HasPrefix(e.Destination, "g.demo.receiver-") || e.Result != "fulfill" {
			continue
		}
		lines++
		if !slices.Contains(connectors, e.Upstream) {
			return fmt.Errorf("access log: a Fulfill from upstream %q, not a connector", e.Upstream)
		}
		after := time.Unix(0, int64(e.TS*1e9)).After(killedAt)
		if after && e.Upstream == killed {
			return fmt.Errorf("access log: %s fulfilled by %s after it was killed", e.Destination, killed)
		}
		if after && e.Rerouted {
			rerouted++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if lines != fulfilled {
		return fmt.Errorf("access log: %d fulfill lines for the rounds' %d Fulfills", lines, fulfilled)
	}
	if rerouted == 0 {
		return fmt.Errorf("access log: no packet rerouted after the kill")
	}
	return nil
}
