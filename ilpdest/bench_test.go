package ilpdest

import (
	"bytes"
	"testing"
)

var (
	sinkInt   int
	sinkBool  bool
	sinkOrder []int
)

func benchmarkReadPrepare(b *testing.B, data []byte) {
	pkt := refAppendPrepare(nil, 107, "20171223012140549", testCondition, "g.us-east.connector1.alice", data)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := ReadPrepare(pkt)
		if err != nil {
			b.Fatal(err)
		}
		sinkInt += len(p.Destination)
	}
}

// A 79-byte packet, the size of ilp-packet's test Prepare.
func BenchmarkReadPrepare79B(b *testing.B) { benchmarkReadPrepare(b, []byte("hi")) }

// A 33 KB packet: the largest data field ILP allows.
func BenchmarkReadPrepare33KB(b *testing.B) { benchmarkReadPrepare(b, make([]byte, 32767)) }

func BenchmarkValidAddress60B(b *testing.B) {
	addr := []byte("g.us-east-1.connector-07.rafiki.accounts.alice_wallet~prod42")
	if len(addr) != 60 || !ValidAddress(addr) {
		b.Fatalf("bad benchmark address (%d bytes)", len(addr))
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = ValidAddress(addr)
	}
}

func benchmarkRank(b *testing.B, n int) {
	backends := testBackends(n)
	order := make([]int, 0, n)
	b.ReportAllocs()
	for b.Loop() {
		sinkOrder = Rank("g.us-east.connector1", backends, order[:0])
	}
}

func BenchmarkRank3(b *testing.B)  { benchmarkRank(b, 3) }
func BenchmarkRank16(b *testing.B) { benchmarkRank(b, 16) }
func BenchmarkRank64(b *testing.B) { benchmarkRank(b, 64) }

func BenchmarkAppendReject(b *testing.B) {
	buf := make([]byte, 0, 256)
	r := Reject{Code: CodeT01, TriggeredBy: "g.us-east.edge", Message: "no upstream available"}
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReject(buf[:0], r)
	}
	if !bytes.Contains(buf, []byte("T01")) {
		b.Fatal("bad reject")
	}
}
