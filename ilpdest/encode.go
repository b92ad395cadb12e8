package ilpdest

import (
	"encoding/binary"
)

// AppendPrepare appends p, OER-encoded as an ILP Prepare, to dst. The edge
// forwards Prepares as received and never re-encodes them; this is for
// test peers, stub connectors and load generators. ExpiresAt is written in
// UTC with millisecond precision; ExecutionCondition must be 32 bytes.
func AppendPrepare(dst []byte, p Prepare) []byte {
	n := amountLen + timestampLen + conditionLen +
		lengthSize(len(p.Destination)) + len(p.Destination) +
		lengthSize(len(p.Data)) + len(p.Data)
	dst = append(dst, byte(TypePrepare))
	dst = appendLength(dst, n)
	dst = binary.BigEndian.AppendUint64(dst, p.Amount)
	dst = p.ExpiresAt.UTC().AppendFormat(dst, "20060102150405.000")
	// AppendFormat writes "YYYYMMDDHHmmSS.fff"; ILP has no dot.
	copy(dst[len(dst)-4:], dst[len(dst)-3:])
	dst = dst[:len(dst)-1]
	dst = append(dst, p.ExecutionCondition...)
	dst = appendLength(dst, len(p.Destination))
	dst = append(dst, p.Destination...)
	dst = appendLength(dst, len(p.Data))
	return append(dst, p.Data...)
}

// AppendFulfill appends an ILP Fulfill with the given 32-byte fulfillment
// and data to dst.
func AppendFulfill(dst, fulfillment, data []byte) []byte {
	dst = append(dst, byte(TypeFulfill))
	dst = appendLength(dst, len(fulfillment)+lengthSize(len(data))+len(data))
	dst = append(dst, fulfillment...)
	dst = appendLength(dst, len(data))
	return append(dst, data...)
}
