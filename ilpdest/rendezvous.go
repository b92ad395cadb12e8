package ilpdest

import "github.com/cespare/xxhash/v2"

// Weight is the rendezvous (highest-random-weight) weight of key on the
// backend named backend. It depends only on the two strings: no seed, no
// process state, no machine state. So every edge instance, after every
// restart, ranks a key's backends identically without coordination.
//
// The weight is the 64-bit MurmurHash3 finaliser of xxhash64(backend) XOR
// xxhash64(key): hashing the key once per packet rather than once per
// backend, while the finaliser makes each backend's weights independent.
// Changing it would move keys between backends across a fleet running mixed
// versions; testdata/rendezvous.json pins it.
func Weight(backend, key string) uint64 {
	return weight(xxhash.Sum64String(backend), xxhash.Sum64String(key))
}

func weight(backendHash, keyHash uint64) uint64 {
	x := backendHash ^ keyHash
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Rank orders backends for key by descending rendezvous weight and appends
// their indexes, best first, to order (which may be nil; pass a reused
// buffer to avoid allocating). Ties, which need a 64-bit collision, go to
// the lower index. A caller routes to the first index whose backend is
// usable: removing a backend then moves only the keys it ranked first, and
// adding one takes over only the keys it now ranks first.
func Rank(key string, backends []string, order []int) []int {
	const stackWeights = 64
	var buf [stackWeights]uint64
	weights := buf[:0]
	if len(backends) > stackWeights {
		weights = make([]uint64, 0, len(backends))
	}
	base := len(order)
	keyHash := xxhash.Sum64String(key)
	for i, b := range backends {
		w := weight(xxhash.Sum64String(b), keyHash)
		weights = append(weights, w)
		order = append(order, i)
		// Insertion sort: backends lists are short, and this keeps Rank
		// allocation-free where sort.Slice's closure would not be.
		for j := len(order) - 1; j > base && weights[order[j-1]] < w; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}
