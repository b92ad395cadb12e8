package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// faultConnector is a connector on loopback that misbehaves as each packet
// asks: the last segment of the destination names what it does (see
// answer). It speaks raw HTTP/1.1 so that it can break the protocol, and
// counts how many times each destination reached it.
type faultConnector struct {
	addr     string
	mu       sync.Mutex
	received map[string]int
}

func startFaultConnector(t *testing.T) *faultConnector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &faultConnector{addr: l.Addr().String(), received: map[string]int{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

// times reports how many times dest reached the connector.
func (f *faultConnector) times(dest string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received[dest]
}

func (f *faultConnector) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		p, err := ilpdest.ReadPrepare(body)
		if err != nil {
			return
		}
		dest := string(p.Destination)
		f.mu.Lock()
		f.received[dest]++
		f.mu.Unlock()
		if !answer(c, dest[strings.LastIndexByte(dest, '.')+1:]) {
			return
		}
	}
}

// answer writes the reply a mode asks for; false closes the connection.
func answer(c net.Conn, mode string) bool {
	reply := func(status string, body []byte) bool {
		fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", status, len(body))
		c.Write(body)
		return true
	}
	switch mode {
	case "fulfill":
		return reply("200 OK", ilptest.Fulfill([]byte("fault")))
	case "reject":
		return reply("200 OK", ilptest.Reject("F99", "g.fault", "application error"))
	case "stall":
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until the edge gives up and closes
		return false
	case "close":
		return false // read the packet, then died
	case "partial":
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\x0d\x40")
		return false
	case "garbage":
		c.Write([]byte("HELLO, WORLD\r\n\r\n"))
		return false
	case "status500":
		return reply("500 Internal Server Error", []byte("database on fire"))
	case "status404":
		return reply("404 Not Found", []byte("no such account"))
	case "nocontent":
		c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
		return true
	case "notilp":
		return reply("200 OK", []byte("<html>oops</html>"))
	case "badfulfill":
		return reply("200 OK", []byte{13, 3, 'a', 'b', 'c'}) // no 32-byte fulfillment
	case "huge":
		return reply("200 OK", make([]byte, 10<<20))
	}
	return false
}

// TestRejectTable checks the failure→Reject table (README, rejects.go)
// row by row against both forwarders in a Caddy site, reverse_proxy with
// ilp_prefix and ilp_proxy, and against ilp_proxy in the ilp app's front
// door. Each row is a connector behaving one way; the peer must get the
// same answer from all three.
func TestRejectTable(t *testing.T) {
	fault := startFaultConnector(t).addr
	dead := ilptest.DeadAddress(t)
	// The ilp app's front door: ilp_proxy as at /ilp_proxy, on 9082 (and
	// to the dead address on 9083).
	frontDoor := func(port int, upstream, options string) string {
		return fmt.Sprintf(`server 127.0.0.1:%d {
				ilp_edge {
					address test.edge
					peer alice {
						token alice-token
					}
				}
				ilp_proxy %s {
					%s
				}
			}`, port, upstream, options)
	}
	tester, _ := startInProcessWith(t, "ilp {\n\t\t\t"+frontDoor(9082, fault, "max_hold 1500ms")+"\n\t\t\t"+frontDoor(9083, dead, "")+"\n\t\t}", fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token alice-token
			}
		}
		handle /reverse_proxy {
			reverse_proxy %[1]s {
				lb_policy ilp_prefix
				transport http {
					response_header_timeout 1500ms
				}
			}
		}
		handle /ilp_proxy {
			ilp_proxy %[1]s {
				max_hold 1500ms
			}
		}
		handle /reverse_proxy/dead {
			reverse_proxy %[2]s {
				lb_policy ilp_prefix
			}
		}
		handle /ilp_proxy/dead {
			ilp_proxy %[2]s
		}
	}`, fault, dead))

	// Each row names the cause the Reject's message must give, so that a
	// row cannot pass by way of another failure (a 204 waited on until
	// the hold limit would be T00 too).
	for _, row := range []struct {
		what, mode string
		ttl        time.Duration
		dead       bool
		want       string // a Reject code, or "fulfill"
		message    string // in the Reject's message
	}{
		{"a Fulfill is relayed", "fulfill", time.Minute, false, "fulfill", ""},
		{"a connector's Reject is relayed", "reject", time.Minute, false, "F99", "application error"},
		{"packet expired before a reply came", "stall", 500 * time.Millisecond, false, "R00", "expired"},
		{"no connector reached (dial refused)", "fulfill", time.Minute, true, "T01", "no connector reachable"},
		{"connector read the packet and closed", "close", time.Minute, false, "T00", "broke"},
		{"reply broke off mid-body", "partial", time.Minute, false, "T00", "broke"},
		{"no reply within the hold limit", "stall", time.Minute, false, "T00", "hold limit"},
		{"reply not HTTP", "garbage", time.Minute, false, "T00", ""},
		{"reply over 64 KiB", "huge", time.Minute, false, "T00", ""},
		{"status 500", "status500", time.Minute, false, "T00", "HTTP 500"},
		{"status 404", "status404", time.Minute, false, "T00", "HTTP 404"},
		{"status 204, no body", "nocontent", time.Minute, false, "T00", "HTTP 204"},
		{"200 whose body is not ILP", "notilp", time.Minute, false, "T00", "not an ILP packet"},
		{"200 with a Fulfill missing its fulfillment", "badfulfill", time.Minute, false, "T00", "not an ILP packet"},
	} {
		for _, door := range []string{"reverse_proxy", "ilp_proxy", "front_door"} {
			t.Run(row.what+"/"+door, func(t *testing.T) {
				url := "http://127.0.0.1:9080/" + door
				if row.dead {
					url += "/dead"
				}
				switch {
				case door == "front_door" && row.dead:
					url = "http://127.0.0.1:9083/"
				case door == "front_door":
					url = "http://127.0.0.1:9082/"
				}
				req, _ := http.NewRequest(http.MethodPost, url,
					bytes.NewReader(ilptest.Prepare("g.fault."+row.mode, row.ttl)))
				req.Header.Set("Authorization", "Bearer alice-token")
				start := time.Now()
				res, err := tester.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				took := time.Since(start)
				got, message := "fulfill", ""
				if _, ok := ilptest.FulfillData(body); !ok {
					rej, err := ilpdest.ReadReject(body)
					got, message = rej.Code.String(), rej.Message
					if err != nil {
						got = fmt.Sprintf("no ILP packet (%v)", err)
					}
				}
				if res.StatusCode != http.StatusOK || got != row.want || !strings.Contains(message, row.message) {
					t.Errorf("HTTP %d, %s %q after %v; want 200 and %s %q", res.StatusCode, got, message,
						took.Round(time.Millisecond), row.want, row.message)
				}
			})
		}
	}
}

// TestIdempotencyKeyNotReplayed: a peer's Idempotency-Key would make
// reverse_proxy's transport send a POST again after a reused connection
// broke; ilp_edge drops the header, so a connector that read the packet
// and closed gets it once, and the peer a T00.
func TestIdempotencyKeyNotReplayed(t *testing.T) {
	fault := startFaultConnector(t)
	tester, _ := startInProcess(t, bothDoors(9080, hostileToken, fault.addr, "", ""))
	send := func(door, dest string) string {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/"+door, bytes.NewReader(ilptest.Prepare(dest, time.Minute)))
		req.Header.Set("Authorization", "Bearer "+hostileToken)
		req.Header.Set("Idempotency-Key", dest)
		res, err := tester.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return answerOf(res, body)
	}
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		// The first packet leaves a pooled connection for the second to reuse.
		if got := send(door, "g.idem."+door+".fulfill"); got != "fulfill" {
			t.Fatalf("%s: first packet got %s", door, got)
		}
		dest := "g.idem." + door + ".close"
		if got := send(door, dest); got != "T00" {
			t.Errorf("%s: a packet the connector read and then hung up on got %s, want T00", door, got)
		}
		if n := fault.times(dest); n != 1 {
			t.Errorf("%s: the connector got the packet %d times, want once", door, n)
		}
	}
}
