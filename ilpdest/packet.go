package ilpdest

// Type is an ILP packet's type byte (RFC 27).
type Type uint8

// The ILP packet types.
const (
	TypePrepare Type = 12
	TypeFulfill Type = 13
	TypeReject  Type = 14
)

func (t Type) String() string {
	switch t {
	case TypePrepare:
		return "prepare"
	case TypeFulfill:
		return "fulfill"
	case TypeReject:
		return "reject"
	}
	return "unknown"
}

// readEnvelope reads a packet's type byte and contents length prefix. It
// returns the offset where the contents start and the offset where they end
// per the prefix, which may lie beyond len(b).
func readEnvelope(b []byte, want Type) (start, end int, err error) {
	if len(b) == 0 {
		return 0, 0, parseError("type", 0, ErrTruncated)
	}
	if Type(b[0]) != want {
		return 0, 0, parseError("type", 0, ErrType)
	}
	n, start, err := readLength(b, 1, "envelope length")
	if err != nil {
		return 0, 0, err
	}
	return start, start + n, nil
}
