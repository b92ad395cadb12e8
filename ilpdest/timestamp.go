package ilpdest

import (
	"encoding/binary"
	"time"
)

// timestampLen is the size of an ILP timestamp: YYYYMMDDHHmmSSfff in UTC.
const timestampLen = 17

// parseTimestamp decodes an Interledger timestamp (RFC 27, RFC 30) strictly,
// as interledger-rs does: 17 ASCII digits naming a real calendar instant.
// ilp-packet's lenient Date.UTC would roll month 13 into the next year; an
// edge that disagreed with the connector behind it about a packet's expiry
// would be worse than one that refuses the packet, so refuse it.
func parseTimestamp(b []byte) (time.Time, bool) {
	if len(b) != timestampLen {
		return time.Time{}, false
	}
	if !allDigits(binary.LittleEndian.Uint64(b)) || !allDigits(binary.LittleEndian.Uint64(b[8:])) || b[16]-'0' > 9 {
		return time.Time{}, false
	}
	year := two(b, 0)*100 + two(b, 2)
	month, day := two(b, 4), two(b, 6)
	hour, minute, sec := two(b, 8), two(b, 10), two(b, 12)
	milli := two(b, 14)*10 + int(b[16]-'0')
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	unix := ((daysFromCivil(year, month, day)*24+int64(hour))*60+int64(minute))*60 + int64(sec)
	// ilp-packet refuses exactly the Unix epoch (it tests !date.valueOf()).
	if unix == 0 && milli == 0 {
		return time.Time{}, false
	}
	return time.Unix(unix, int64(milli)*1e6).UTC(), true
}

// allDigits reports whether all eight bytes packed in x are ASCII digits:
// each byte's high nibble must be 3, and stay 3 after adding 6 (so the low
// nibble is at most 9). A carry out of a byte only happens when that byte
// already failed the first test.
func allDigits(x uint64) bool {
	const hi, three, six = 0xf0f0f0f0f0f0f0f0, 0x3030303030303030, 0x0606060606060606
	return x&hi == three && (x+six)&hi == three
}

// two decodes the two ASCII digits at b[i:].
func two(b []byte, i int) int { return int(b[i]-'0')*10 + int(b[i+1]-'0') }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	default:
		return 31
	}
}

// daysFromCivil returns the number of days from 1970-01-01 to a proleptic
// Gregorian date in years 0 to 9999 (after Howard Hinnant's days_from_civil,
// with years counted from March so the leap day comes last). It avoids
// time.Date, which normalises out-of-range fields and costs more.
func daysFromCivil(year, month, day int) int64 {
	y, m := uint(year)+400, uint(month) // +400 years keeps year 0 non-negative
	if m <= 2 {
		y--
		m += 12
	}
	days := y*365 + y/4 - y/100 + y/400 + (153*(m-3)+2)/5 + uint(day) - 1
	return int64(days) - (719468 + 146097)
}
