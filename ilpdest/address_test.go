package ilpdest

import (
	"strings"
	"testing"
)

var addressCases = []struct {
	addr string
	ok   bool
}{
	{"g", false},
	{"g.", false},
	{"g.a", true},
	{"g.a.", false},
	{".g.a", false},
	{"test4.a", false},
	{"G.a", false},
	{"g.a~b", true},
	{"example.a..b", false},
	{"peer.config", true},
	{"self.x", true},
	{"private.x-y_z", true},
	{"test.a", true}, {"test1.a", true}, {"test2.a", true}, {"test3.a", true},
	{"local.a", true},
	{"example.alice", true},
	{"example.al ice", false},
	{"example.alice\x00", false},
	{"example.ü", false},
	{"gg.a", false},
	{"", false},
	{"g." + strings.Repeat("a", 1021), true},  // 1023 bytes
	{"g." + strings.Repeat("a", 1022), false}, // 1024 bytes
}

func TestValidAddress(t *testing.T) {
	for _, c := range addressCases {
		if got := ValidAddress(c.addr); got != c.ok {
			t.Errorf("ValidAddress(%.40q) = %v, want %v", c.addr, got, c.ok)
		}
		if got := ValidAddress([]byte(c.addr)); got != c.ok {
			t.Errorf("ValidAddress([]byte(%.40q)) = %v, want %v", c.addr, got, c.ok)
		}
		if ref := refValidAddress(c.addr); ref != c.ok {
			t.Errorf("reference disagrees on %.40q", c.addr)
		}
	}
}

func TestPrefix(t *testing.T) {
	for _, c := range []struct {
		addr string
		n    int
		want string
	}{
		{"g.us.bank.alice", 3, "g.us.bank"},
		{"g.us.bank.alice", 1, "g"},
		{"g.us.bank.alice", 2, "g.us"},
		{"g.us.bank.alice", 4, "g.us.bank.alice"},
		{"g.us.bank.alice", 9, "g.us.bank.alice"},
		{"g.us.bank.alice", 0, "g.us.bank.alice"},
		{"g.us.bank.alice", -1, "g.us.bank.alice"},
		{"g.a", 3, "g.a"},
		{"", 3, ""},
	} {
		if got := Prefix(c.addr, c.n); got != c.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", c.addr, c.n, got, c.want)
		}
	}
}
