package ilpdest

// readLength decodes an OER length determinant (RFC 30) at b[off:]. It
// returns the length and the offset just past the determinant. It is strict
// where ilp-packet and interledger-rs are strict: the indefinite form 0x80, a
// long form with leading zero bytes or a value below 128, and more than 8
// length bytes are all refused. It does not check that the length fits in b.
func readLength(b []byte, off int, field string) (n, next int, err error) {
	if off >= len(b) {
		return 0, off, parseError(field, off, ErrTruncated)
	}
	first := b[off]
	if first < 0x80 {
		return int(first), off + 1, nil
	}
	size := int(first & 0x7f)
	// 0x80 is the indefinite form; more than 3 length bytes would describe a
	// length no ILP packet (and no int on every platform) can have, so the
	// value could never be canonical and in range at once.
	if size == 0 || size > 3 {
		return 0, off, parseError(field, off, ErrLengthPrefix)
	}
	if off+1+size > len(b) {
		return 0, off, parseError(field, off, ErrTruncated)
	}
	if b[off+1] == 0 {
		return 0, off, parseError(field, off, ErrLengthPrefix)
	}
	for _, c := range b[off+1 : off+1+size] {
		n = n<<8 | int(c)
	}
	if n < 0x80 {
		return 0, off, parseError(field, off, ErrLengthPrefix)
	}
	return n, off + 1 + size, nil
}

// readVarOctets decodes an OER variable-length octet string at b[off:] and
// returns it as a sub-slice of b (no copy) with the offset just past it.
func readVarOctets(b []byte, off int, field string) (v []byte, next int, err error) {
	n, start, err := readLength(b, off, field)
	if err != nil {
		return nil, off, err
	}
	if n > len(b)-start {
		return nil, off, parseError(field, off, ErrTruncated)
	}
	return b[start : start+n : start+n], start + n, nil
}

// appendLength appends the canonical OER length determinant for n.
func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// lengthSize is the number of bytes appendLength writes for n.
func lengthSize(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	default:
		return 4
	}
}
