package ilpdest

// Code is an ILP error code (RFC 27): a letter F (final), T (temporary) or R
// (relative) and two digits.
type Code [3]byte

func (c Code) String() string { return string(c[:]) }

// The error codes the edge answers with; RFC 27 defines the others.
var (
	CodeF01 = Code{'F', '0', '1'} // Invalid Packet
	CodeF02 = Code{'F', '0', '2'} // Unreachable
	CodeF08 = Code{'F', '0', '8'} // Amount Too Large; its data is receivedAmount and maximumAmount, UInt64 each
	CodeT00 = Code{'T', '0', '0'} // Internal Error
	CodeT01 = Code{'T', '0', '1'} // Peer Unreachable
	CodeT03 = Code{'T', '0', '3'} // Connector Busy
	CodeT04 = Code{'T', '0', '4'} // Insufficient Liquidity
	CodeT05 = Code{'T', '0', '5'} // Rate Limited
	CodeR00 = Code{'R', '0', '0'} // Transfer Timed Out
	CodeR02 = Code{'R', '0', '2'} // Insufficient Timeout
)

// Reject holds the fields of an ILP Reject packet.
type Reject struct {
	Code        Code
	TriggeredBy string // the ILP address of the node that rejected
	Message     string // UTF-8
	Data        []byte
}

// AppendReject appends r, OER-encoded as an ILP Reject packet, to dst and
// returns the extended slice. The bytes are identical to what ilp-packet's
// serializeIlpReject produces. With enough capacity in dst it does not
// allocate.
func AppendReject(dst []byte, r Reject) []byte {
	n := len(r.Code) +
		lengthSize(len(r.TriggeredBy)) + len(r.TriggeredBy) +
		lengthSize(len(r.Message)) + len(r.Message) +
		lengthSize(len(r.Data)) + len(r.Data)
	dst = append(dst, byte(TypeReject))
	dst = appendLength(dst, n)
	dst = append(dst, r.Code[:]...)
	dst = appendLength(dst, len(r.TriggeredBy))
	dst = append(dst, r.TriggeredBy...)
	dst = appendLength(dst, len(r.Message))
	dst = append(dst, r.Message...)
	dst = appendLength(dst, len(r.Data))
	return append(dst, r.Data...)
}
