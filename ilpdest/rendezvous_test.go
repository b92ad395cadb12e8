package ilpdest

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/rendezvous.json from the current hash")

// testBackends returns n backend names as an operator would write them.
func testBackends(n int) []string {
	b := make([]string, n)
	for i := range b {
		b[i] = fmt.Sprintf("10.0.%d.%d:7768", i/250, i%250+1)
	}
	return b
}

// testKeys returns realistic 3-segment destination prefixes.
func testKeys(n int) []string {
	regions := []string{"us", "eu", "ap", "sa", "af"}
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("g.%s.conn%d.acct%d", regions[i%len(regions)], i%97, i)
	}
	return k
}

func TestRankIsAPermutationOrderedByWeight(t *testing.T) {
	backends := testBackends(16)
	for _, key := range testKeys(200) {
		order := Rank(key, backends, nil)
		if len(order) != len(backends) {
			t.Fatalf("Rank returned %d indexes for %d backends", len(order), len(backends))
		}
		seen := map[int]bool{}
		for i, idx := range order {
			if seen[idx] {
				t.Fatalf("index %d twice", idx)
			}
			seen[idx] = true
			if i > 0 && Weight(backends[order[i-1]], key) < Weight(backends[idx], key) {
				t.Fatalf("key %q: order not by descending weight at %d", key, i)
			}
		}
	}
}

func TestRankAppends(t *testing.T) {
	got := Rank("g.a", []string{"a", "b"}, []int{7})
	if len(got) != 3 || got[0] != 7 {
		t.Fatalf("Rank did not append: %v", got)
	}
	if r := Rank("g.a", nil, nil); len(r) != 0 {
		t.Fatalf("Rank over no backends = %v", r)
	}
	// More backends than Rank keeps on its stack.
	if r := Rank("g.a", testBackends(100), nil); len(r) != 100 {
		t.Fatalf("Rank over 100 backends returned %d", len(r))
	}
}

// TestRankMinimalDisruption checks the property the edge is built on: when
// a backend goes away, only the keys it ranked first move.
func TestRankMinimalDisruption(t *testing.T) {
	keys := testKeys(10000)
	for n := 2; n <= 16; n++ {
		backends := testBackends(n)
		first := make([]int, len(keys))
		for i, k := range keys {
			first[i] = Rank(k, backends, nil)[0]
		}
		gone := n / 2
		survivors := append(append([]string(nil), backends[:gone]...), backends[gone+1:]...)
		for i, k := range keys {
			now := survivors[Rank(k, survivors, nil)[0]]
			if first[i] != gone && now != backends[first[i]] {
				t.Fatalf("n=%d: key %q moved from %s to %s though %s survived", n, k, backends[first[i]], now, backends[first[i]])
			}
		}
	}
}

type rankVector struct {
	Key      string   `json:"key"`
	Backends []string `json:"backends"`
	Order    []int    `json:"order"`
}

// TestRankDeterminism pins the hash: if Rank's output for these keys ever
// changes, a fleet running mixed versions would split keys between backends.
func TestRankDeterminism(t *testing.T) {
	const path = "testdata/rendezvous.json"
	if *update {
		var vs []rankVector
		for i, k := range testKeys(40) {
			b := testBackends(2 + i%15)
			vs = append(vs, rankVector{k, b, Rank(k, b, nil)})
		}
		raw, _ := json.MarshalIndent(vs, "", " ")
		if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []rankVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vs {
		if got := fmt.Sprint(Rank(v.Key, v.Backends, nil)); got != fmt.Sprint(v.Order) {
			t.Errorf("Rank(%q, %d backends) = %s, pinned %v", v.Key, len(v.Backends), got, v.Order)
		}
	}
}

// TestRankBalance: with realistic destinations, no backend gets more than
// 15% above its fair share of keys.
func TestRankBalance(t *testing.T) {
	keys := testKeys(10000)
	for _, n := range []int{3, 8, 16} {
		backends := testBackends(n)
		counts := make([]int, n)
		for _, k := range keys {
			counts[Rank(k, backends, nil)[0]]++
		}
		most := 0
		for _, c := range counts {
			most = max(most, c)
		}
		mean := float64(len(keys)) / float64(n)
		if ratio := float64(most) / mean; ratio > 1.15 {
			t.Errorf("n=%d: max/mean = %.3f (counts %v)", n, ratio, counts)
		}
	}
}

// TestRankAddMovesLittle: adding a backend takes over at most about
// 1/(N+1) of the keys, and every key that moves, moves to the new one.
func TestRankAddMovesLittle(t *testing.T) {
	keys := testKeys(10000)
	for n := 2; n <= 16; n++ {
		backends := testBackends(n + 1)
		moved := 0
		for _, k := range keys {
			before := Rank(k, backends[:n], nil)[0]
			after := Rank(k, backends, nil)[0]
			if after != before {
				if after != n {
					t.Fatalf("n=%d: key %q moved between old backends", n, k)
				}
				moved++
			}
		}
		if limit := 1.1 / float64(n+1) * float64(len(keys)); float64(moved) > limit {
			t.Errorf("n=%d: adding one backend moved %d keys, limit %.0f", n, moved, limit)
		}
	}
}
