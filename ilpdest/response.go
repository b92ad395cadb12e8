package ilpdest

// ReadResponseType returns the type of a connector's reply: TypeFulfill or
// TypeReject. It checks only the type byte and the envelope's length prefix,
// which must be canonical and fit in b; it is meant for metrics and for
// telling a real reply from garbage, not for validating every field.
func ReadResponseType(b []byte) (Type, error) {
	if len(b) == 0 {
		return 0, parseError("type", 0, ErrTruncated)
	}
	t := Type(b[0])
	if t != TypeFulfill && t != TypeReject {
		return 0, parseError("type", 0, ErrType)
	}
	_, end, err := readEnvelope(b, t)
	if err != nil {
		return 0, err
	}
	if end > len(b) {
		return 0, parseError("envelope length", 1, ErrTruncated)
	}
	return t, nil
}

// ReadRejectCode returns the error code of a Reject packet, such as F02.
func ReadRejectCode(b []byte) (Code, error) {
	start, end, err := readEnvelope(b, TypeReject)
	if err != nil {
		return Code{}, err
	}
	if end > len(b) {
		return Code{}, parseError("envelope length", 1, ErrTruncated)
	}
	if end-start < len(Code{}) {
		return Code{}, parseError("code", start, ErrTruncated)
	}
	return Code(b[start : start+3]), nil
}
