package ilpdest

// Fulfill is a read-only view of an ILP Fulfill packet's fields; its
// slices alias the bytes it was read from.
type Fulfill struct {
	Fulfillment []byte // 32 bytes
	Data        []byte
}

// ReadFulfill reads a whole Fulfill from b: a 32-byte fulfillment and a
// data field inside an envelope that b holds entirely, with canonical
// length prefixes. Bytes after the envelope are ignored (RFC 30).
func ReadFulfill(b []byte) (Fulfill, error) {
	var f Fulfill
	start, end, err := readWholeEnvelope(b, TypeFulfill)
	if err != nil {
		return f, err
	}
	if end-start < conditionLen {
		return f, parseError("fulfillment", start, ErrTruncated)
	}
	f.Fulfillment = b[start : start+conditionLen : start+conditionLen]
	f.Data, _, err = readVarOctets(b[:end], start+conditionLen, "data")
	return f, err
}

// ReadReject reads a whole Reject from b: a three-character code, the
// triggeredBy address (a valid one, or empty as some connectors send), a
// message and a data field, inside an envelope that b holds entirely.
// Data aliases b.
func ReadReject(b []byte) (Reject, error) {
	code, by, msg, data, err := readRejectFields(b)
	return Reject{Code: code, TriggeredBy: string(by), Message: string(msg), Data: data}, err
}

// ReadResponseType returns the type of a connector's reply, TypeFulfill or
// TypeReject, after reading the whole packet as ReadFulfill or ReadReject
// does: a reply that is not a well-formed Fulfill or Reject is an error.
func ReadResponseType(b []byte) (Type, error) {
	if len(b) == 0 {
		return 0, parseError("type", 0, ErrTruncated)
	}
	switch t := Type(b[0]); t {
	case TypeFulfill:
		_, err := ReadFulfill(b)
		return t, err
	case TypeReject:
		_, _, _, _, err := readRejectFields(b)
		return t, err
	}
	return 0, parseError("type", 0, ErrType)
}

// readRejectFields reads a Reject's fields as sub-slices of b, so that
// the per-packet path can check a reply without making strings.
func readRejectFields(b []byte) (code Code, by, msg, data []byte, err error) {
	start, end, err := readWholeEnvelope(b, TypeReject)
	if err != nil {
		return code, nil, nil, nil, err
	}
	b = b[:end]
	if end-start < len(code) {
		return code, nil, nil, nil, parseError("code", start, ErrTruncated)
	}
	code = Code(b[start : start+len(code)])
	next := start + len(code)
	if by, next, err = readVarOctets(b, next, "triggeredBy"); err != nil {
		return code, nil, nil, nil, err
	}
	if len(by) > 0 && !ValidAddress(by) {
		return code, nil, nil, nil, parseError("triggeredBy", start+len(code), ErrAddress)
	}
	if msg, next, err = readVarOctets(b, next, "message"); err != nil {
		return code, nil, nil, nil, err
	}
	data, _, err = readVarOctets(b, next, "data")
	return code, by, msg, data, err
}

// RejectView is a read-only view of a Reject's fields; its slices alias
// the bytes it was read from.
type RejectView struct {
	Code        Code
	TriggeredBy []byte
	Message     []byte
	Data        []byte
}

// ReadRejectView reads a whole Reject from b as ReadReject does, without
// copying its fields.
func ReadRejectView(b []byte) (RejectView, error) {
	code, by, msg, data, err := readRejectFields(b)
	return RejectView{Code: code, TriggeredBy: by, Message: msg, Data: data}, err
}

// ReadRejectCode returns the error code of a well-formed Reject, such as
// F02.
func ReadRejectCode(b []byte) (Code, error) {
	code, _, _, _, err := readRejectFields(b)
	return code, err
}

// readWholeEnvelope is readEnvelope for a packet that b must hold to the
// end of its contents.
func readWholeEnvelope(b []byte, want Type) (start, end int, err error) {
	start, end, err = readEnvelope(b, want)
	if err != nil {
		return 0, 0, err
	}
	if end > len(b) {
		return 0, 0, parseError("envelope length", 1, ErrTruncated)
	}
	return start, end, nil
}
