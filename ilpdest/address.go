package ilpdest

import "strings"

// MaxAddressLen is the longest ILP address RFC 15 allows, in bytes.
const MaxAddressLen = 1023

// addressByte classifies the bytes that may follow an address's scheme:
// bit 0 is set for [A-Za-z0-9_~-] and '.', bit 1 only for '.'.
var addressByte = func() (t [256]byte) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
		t[c-'a'+'A'] = 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	t['_'], t['~'], t['-'] = 1, 1, 1
	t['.'] = 3
	return t
}()

// ValidAddress reports whether a is an ILP address as RFC 15 defines it and
// as ilp-packet and interledger-rs check it: an allocation scheme (g, private,
// example, peer, self, test, test1, test2, test3, local) followed by one or
// more dot-separated non-empty segments of [A-Za-z0-9_~-], 1023 bytes at most.
func ValidAddress[T ~string | ~[]byte](a T) bool {
	n := len(a)
	if n == 0 || n > MaxAddressLen || a[n-1] == '.' {
		return false
	}
	dot := 0
	for dot < n && a[dot] != '.' {
		dot++
	}
	if dot == n || !validScheme(a[:dot]) {
		return false
	}
	// Branch-free over the rest, four bytes a step: every byte allowed, and
	// no two dots in a row (which, with the checks above, rules out every
	// empty segment).
	rest := a[dot+1:]
	all, prev, twoDots := byte(1), byte(3), byte(0)
	for len(rest) >= 4 {
		v0, v1, v2, v3 := addressByte[rest[0]], addressByte[rest[1]], addressByte[rest[2]], addressByte[rest[3]]
		all &= v0 & v1 & v2 & v3
		twoDots |= v0&prev | v1&v0 | v2&v1 | v3&v2
		prev = v3
		rest = rest[4:]
	}
	for i := 0; i < len(rest); i++ {
		v := addressByte[rest[i]]
		all &= v
		twoDots |= v & prev
		prev = v
	}
	return all&1 == 1 && twoDots&2 == 0
}

func validScheme[T ~string | ~[]byte](s T) bool {
	// Switching on the length first keeps this to one or two short
	// comparisons on the per-packet path.
	switch len(s) {
	case 1:
		return s[0] == 'g'
	case 4:
		return string(s) == "test" || string(s) == "peer" || string(s) == "self"
	case 5:
		return string(s[:4]) == "test" && s[4] >= '1' && s[4] <= '3' || string(s) == "local"
	case 7:
		return string(s) == "example" || string(s) == "private"
	}
	return false
}

// Prefix returns the first n dot-separated segments of address, counting the
// allocation scheme as the first: Prefix("g.us.bank.alice", 3) is
// "g.us.bank". With n <= 0, or n at least the number of segments, it returns
// the whole address. It does not validate the address.
func Prefix(address string, n int) string {
	if n <= 0 {
		return address
	}
	i := -1
	for ; n > 0; n-- {
		j := strings.IndexByte(address[i+1:], '.')
		if j < 0 {
			return address
		}
		i += j + 1
	}
	return address[:i]
}
