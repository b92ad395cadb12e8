package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// prefixResult is what one destination prefix's packets got in a round.
type prefixResult struct {
	connectors map[string]int // Fulfills by connector
	rejects    map[string]int // Rejects by "code (peer)"
}

// round is the result of sending every prefix its packets once.
type round map[string]*prefixResult

// destinations are the prefixes the demo sends to: three segments, the
// part of an address ilp_prefix and ilp_proxy route on by default.
func destinations(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = fmt.Sprintf("g.demo.receiver-%02d", i+1)
	}
	return d
}

// sendRound sends perPrefix packets to each prefix, each to a different
// address under it, taking turns among the peers.
func sendRound(ctx context.Context, peers []*peer, prefixes []string, perPrefix int) (round, error) {
	r := round{}
	for _, prefix := range prefixes {
		res := &prefixResult{connectors: map[string]int{}, rejects: map[string]int{}}
		r[prefix] = res
		for k := range perPrefix {
			p := peers[k%len(peers)]
			a, err := p.send(ctx, fmt.Sprintf("%s.payment-%d", prefix, k))
			if err != nil {
				return nil, err
			}
			if a.connector != "" {
				res.connectors[a.connector]++
			} else {
				res.rejects[fmt.Sprintf("%s (%s)", a.code, p.name)]++
			}
		}
	}
	return r, nil
}

// connector is the one connector that fulfilled the prefix's packets, or
// a description of what went wrong.
func (p *prefixResult) connector() string {
	switch len(p.connectors) {
	case 0:
		return "none"
	case 1:
		for c := range p.connectors {
			return c
		}
	}
	return "several: " + strings.Join(slices.Sorted(maps.Keys(p.connectors)), ", ")
}

func (p *prefixResult) fulfilled() int {
	n := 0
	for _, c := range p.connectors {
		n += c
	}
	return n
}

// fulfilled is how many of the round's packets got a Fulfill.
func (r round) fulfilled() int {
	n := 0
	for _, p := range r {
		n += p.fulfilled()
	}
	return n
}

// movedFrom says which connector was killed since the round before.
type movedFrom struct {
	round     round
	connector string
}

// check returns an error unless every prefix's packets went to exactly
// one connector and every packet was fulfilled. After a kill, a prefix of
// the killed connector must have moved, and every other prefix must have
// stayed where it was: both forwarders send a packet whose connector
// refuses the connection to the prefix's next choice.
func (r round) check(kill *movedFrom) error {
	lost := 0
	for _, prefix := range slices.Sorted(maps.Keys(r)) {
		res := r[prefix]
		if len(res.connectors) > 1 {
			return fmt.Errorf("%s: packets went to %s: not sticky", prefix, res.connector())
		}
		if len(res.rejects) > 0 {
			return fmt.Errorf("%s: Rejects %v, want every packet fulfilled", prefix, res.rejects)
		}
		if kill == nil {
			continue
		}
		was := kill.round[prefix].connector()
		if was != kill.connector {
			if res.connector() != was {
				return fmt.Errorf("%s moved from %s to %s though %s was not killed", prefix, was, res.connector(), was)
			}
			continue
		}
		lost++
		if res.connector() == kill.connector {
			return fmt.Errorf("%s: still on %s, which was killed", prefix, kill.connector)
		}
	}
	if kill != nil && lost == 0 {
		return fmt.Errorf("no prefix was on %s, so the kill shows nothing; use more -destinations", kill.connector)
	}
	return nil
}

// print writes the round as a table; with before, it shows where each
// prefix was in the round before.
func (r round) print(out io.Writer, before round) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if before == nil {
		fmt.Fprintln(w, "destination prefix\tconnector\tfulfilled\trejected")
	} else {
		fmt.Fprintln(w, "destination prefix\tbefore\tnow\tfulfilled\trejected")
	}
	for _, prefix := range slices.Sorted(maps.Keys(r)) {
		res := r[prefix]
		rejects := "-"
		if len(res.rejects) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(res.rejects)) {
				parts = append(parts, fmt.Sprintf("%d× %s", res.rejects[k], k))
			}
			rejects = strings.Join(parts, ", ")
		}
		if before == nil {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", prefix, res.connector(), res.fulfilled(), rejects)
			continue
		}
		was, now := before[prefix].connector(), res.connector()
		if now != was {
			now += "  (moved)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", prefix, was, now, res.fulfilled(), rejects)
	}
	w.Flush()
}

// summary says in one paragraph what the kill did.
func (r round) summary(before round, killed string) string {
	moved, stayed, fulfilled, rejected := 0, 0, 0, 0
	for prefix, res := range r {
		fulfilled += res.fulfilled()
		for _, n := range res.rejects {
			rejected += n
		}
		if before[prefix].connector() == killed {
			moved++
		} else {
			stayed++
		}
	}
	return fmt.Sprintf("%d prefixes moved, all of them %s's; the other %d stayed on their connector.\n"+
		"Peers got %d Fulfills, %d Rejects and no HTTP errors: ilp_proxy (bob, carol) and reverse_proxy with lb_retries\n"+
		"(alice) found the dead connector's dial refused and sent each packet to its prefix's next choice at once.",
		moved, killed, stayed, fulfilled, rejected)
}
