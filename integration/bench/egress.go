package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/ilpclient"
	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
)

// idEgress selects, with -only, the rows of ilp_egress, the fleet's way
// out (docs/egress.md): a connector's outgoing Prepare sent straight to
// a peer, against the same through the edge to a synchronous peer and to
// an asynchronous (RFC 35 draft 3) one. It is no contender: the far end
// is a peer of the harness' own, not the stubs, and the load is the Go
// client's (goLoad), as for the asynchronous exchanges.
const idEgress = "egress"

// egressPeerCommand is the first argument with which the harness runs
// itself as the egress rows' peer (runEgressPeer): in a process of its
// own, so that the peer's CPU is told from the connector's, which is the
// harness' own process.
const egressPeerCommand = "egress-peer"

// benchPeerToken is the peer's credential toward the edge, which it
// presents with its replies by callback (a test value on loopback). The
// edge's toward the peer is benchCallbackToken, the fleet's toward the
// edge benchToken.
const benchPeerToken = "bench-peer-token"

// egressConns is the connector's connections, as in 79-h1 and the
// asynchronous rows.
const egressConns = 32

// egressPath is one way for the connector's Prepare to reach the peer.
type egressPath int

const (
	egressDirect egressPath = iota // straight to the synchronous peer, as a connector without the edge sends
	egressSync                     // through ilp_egress to the synchronous peer
	egressAsync                    // through ilp_egress to the draft 3 peer: 202, then the reply by callback to the edge
)

func (p egressPath) String() string {
	return [...]string{"direct", "egress sync", "egress async"}[p]
}

// peerName is the peer's name in the edge's ilp_peers, and so in the
// connector's URL: /peers/<name>/.
func (p egressPath) peerName() string {
	if p == egressAsync {
		return "asyncpeer"
	}
	return "syncpeer"
}

// egressResults is the egress comparison over all rounds: the peak of
// each path through the edge, then the three paths at half the lower one.
type egressResults struct {
	rate      int         // packets/s offered in the fixed-rate runs: half the lower median peak
	syncPeak  []egressRun // through the edge to the synchronous peer, each connection sending as soon as its answer came
	asyncPeak []egressRun // the same to the draft 3 peer
	direct    []egressRun // at rate: (a) straight to the synchronous peer
	sync      []egressRun // at rate: (b) through the edge to it
	async     []egressRun // at rate: (c) through the edge to the draft 3 peer
}

// egressRun is one run's figures. Its sample's proxy figures are the
// edge's (NaN for a direct run), its stubCPU the peer's.
type egressRun struct {
	sample
	connectorCPU float64 // µs per packet of the harness' process: the load generator, "the connector"
	tally        egressTally
	// The peer's connections over its life (it is started for the run):
	// those it accepted (from the edge, or from the connector when
	// direct), and those it opened to the edge's replies route; and how
	// many of each were closed before the end.
	peerConns, peerClosed, callbackConns, callbackClosed int64
}

// totalCPU is what the packet cost on every process it crossed: the
// connector, the edge (if any) and the peer.
func (r egressRun) totalCPU() float64 {
	t := r.connectorCPU + r.stubCPU
	if !math.IsNaN(r.proxyCPU) { // through the edge
		t += r.proxyCPU
	}
	return t
}

// all is every run, for the counts.
func (e *egressResults) all() [][]egressRun {
	return [][]egressRun{e.syncPeak, e.asyncPeak, e.direct, e.sync, e.async}
}

// failures counts lost, duplicated and unexpected packets over all runs.
func (e *egressResults) failures() int64 {
	var n int64
	for _, rs := range e.all() {
		for _, r := range rs {
			n += r.tally.failures()
		}
	}
	return n
}

// empty reports whether a run answered nothing, which fails it too.
func (e *egressResults) empty() bool {
	for _, rs := range e.all() {
		for _, r := range rs {
			if r.packets == 0 {
				return true
			}
		}
	}
	return false
}

// egressTally is one run's accounting, warm-up and measured load, from
// both ends: what the connector sent and got, and what the peer got and
// sent.
type egressTally struct {
	sent      int64 // Prepares the connector sent
	fulfilled int64 // of them answered with the peer's Fulfill
	prepares  int64 // Prepares the peer got
	ids       int64 // distinct Request-Ids among them (draft 3 peer)
	replies   int64 // the peer's replies by callback the edge took (200)
	// lost: the connector's Prepares without their Fulfill (no answer,
	// another status, a Reject or another body).
	lost int64
	// duplicated: Prepares the peer got beyond one for each the
	// connector sent (a draft 3 Prepare sent again with its Request-Id
	// counts: on loopback no try should fail), and replies the edge took
	// beyond one for each Request-Id.
	duplicated int64
	// unexpected: Fulfills the connector got for Prepares the peer never
	// saw, requests the peer refused (credential, body, headers), and
	// replies the edge refused (an id it did not wait for, or answered).
	unexpected int64
}

func (t egressTally) failures() int64 { return t.lost + t.duplicated + t.unexpected }

func (t egressTally) add(u egressTally) egressTally {
	return egressTally{
		sent: t.sent + u.sent, fulfilled: t.fulfilled + u.fulfilled, prepares: t.prepares + u.prepares,
		ids: t.ids + u.ids, replies: t.replies + u.replies,
		lost: t.lost + u.lost, duplicated: t.duplicated + u.duplicated, unexpected: t.unexpected + u.unexpected,
	}
}

// egressCount judges a run: r is the connector's side, d the peer's
// counters over the same load (after less before). A reply the
// peer could not deliver by callback leaves its Prepare lost at the
// connector, where it is counted.
func egressCount(r goLoadResult, d peerStats) egressTally {
	return egressTally{
		sent: r.sent, fulfilled: r.ok, prepares: d.Prepares, ids: d.IDs, replies: d.Replies,
		lost:       r.failed,
		duplicated: max(0, d.Prepares-r.sent) + max(0, d.Replies-d.IDs),
		unexpected: max(0, r.ok-d.Prepares) + d.Refused + d.Rejected,
	}
}

// measureEgress runs the comparison: o.rounds interleaved pairs of runs
// through the edge at their peak (synchronous and draft 3 peer), then
// o.rounds interleaved triples at half the lower median peak: direct,
// through the edge to the synchronous peer, and to the draft 3 one. Half
// the lower peak, as for the asynchronous exchanges: a rate every path
// carries without queueing, so that latency is not a saturated
// machine's, and the CPU per packet of each is at the same load.
func (b *bench) measureEgress(ctx context.Context, o options) (*egressResults, error) {
	e := &egressResults{}
	run := func(round int, path egressPath, rate int) (egressRun, error) {
		r, err := b.measureEgressRun(ctx, o, path, rate)
		name := egressRunName(path, rate)
		if err != nil {
			return egressRun{}, fmt.Errorf("round %d, %s: %w", round, name, err)
		}
		log.Printf("round %d  %-22s %-28s %8.0f pkt/s %7.1f µs/pkt  connector %.1f, peer %.1f µs/pkt  fail %d",
			round, idEgress, name, r.pps, r.proxyCPU, r.connectorCPU, r.stubCPU, r.tally.failures())
		return r, nil
	}
	for round := 1; round <= o.rounds; round++ {
		for _, path := range []egressPath{egressSync, egressAsync} {
			r, err := run(round, path, 0)
			if err != nil {
				return nil, err
			}
			if path == egressAsync {
				e.asyncPeak = append(e.asyncPeak, r)
			} else {
				e.syncPeak = append(e.syncPeak, r)
			}
		}
	}
	peak := min(summarize(egressSamples(e.syncPeak)).pps, summarize(egressSamples(e.asyncPeak)).pps)
	e.rate = max(1, int(peak/2))
	for round := 1; round <= o.rounds; round++ {
		for _, path := range []egressPath{egressDirect, egressSync, egressAsync} {
			r, err := run(round, path, e.rate)
			if err != nil {
				return nil, err
			}
			switch path {
			case egressDirect:
				e.direct = append(e.direct, r)
			case egressSync:
				e.sync = append(e.sync, r)
			default:
				e.async = append(e.async, r)
			}
		}
	}
	return e, nil
}

func egressRunName(path egressPath, rate int) string {
	if rate == 0 {
		return path.String() + ", peak"
	}
	return fmt.Sprintf("%s at %d/s", path, rate)
}

func egressSamples(rs []egressRun) []sample {
	var ss []sample
	for _, r := range rs {
		ss = append(ss, r.sample)
	}
	return ss
}

// measureEgressRun starts a fresh peer and, unless direct, a fresh edge
// whose ilp_egress sends to it; loads the path with 79-byte Prepares from
// the Go client at rate (0: as fast as answers come) after a warm-up
// (unmeasured, but its packets counted); and stops both. Every process's CPU is taken from the start
// of the measured load until the last answer, and, for the draft 3 peer,
// its last callback: the connector's (the harness' process, whose other
// goroutines idle meanwhile), the edge's and the peer's.
func (b *bench) measureEgressRun(ctx context.Context, o options, path egressPath, rate int) (egressRun, error) {
	dir, err := os.MkdirTemp(b.dir, idEgress+"-")
	if err != nil {
		return egressRun{}, err
	}
	wl := workload{body: b.prepares["79"]}
	// The connector's request is the same on every path: only the URL
	// differs. Direct, the peer takes the connector's credential, as a
	// peer does whose account a connector holds; through the edge, the
	// edge's.
	headers := b.headers(contender{header: true}, wl)
	auth := "Bearer " + benchCallbackToken
	if path == egressDirect {
		auth = "Bearer " + benchToken
	}
	peer, err := b.startEgressPeer(ctx, dir, path == egressAsync, auth)
	if err != nil {
		return egressRun{}, err
	}
	srv, url := &server{}, peer.url
	defer func() {
		// The peer first: its client may hold a connection to the
		// replies route that it dialed for a callback and never used,
		// which the edge's graceful stop (net/http's Shutdown) waits 5 s
		// for. Nothing is in flight any more.
		peer.proc.Stop()
		if srv.proc != nil {
			srv.proc.Stop()
		}
	}()
	if path != egressDirect {
		edge, err := b.startEgressEdge(dir, path, peer)
		if err != nil {
			return egressRun{}, err
		}
		srv, url = edge, edge.h1+"/peers/"+path.peerName()+"/"
	}
	ready := srv.proc
	if ready == nil {
		ready = peer.proc
	}
	err = ready.WaitReady(ctx, 20*time.Second, func() error {
		reply, err := ilpclient.Post(h1Client, url, wl.body, headers)
		if err != nil {
			return err
		}
		return expectFulfill(reply, len(b.fulfill))
	})
	if err != nil {
		return egressRun{}, err
	}

	// The readiness probe's callback may still await the edge's 200.
	if err := peer.settle(ctx, callbackWait); err != nil {
		return egressRun{}, err
	}
	start, err := peer.stats()
	if err != nil {
		return egressRun{}, err
	}
	load := goLoad{url: url, body: wl.body, headers: headers, conns: egressConns, rate: rate, fulfillSize: len(b.fulfill)}
	warm := load
	warm.duration, warm.limit = o.warmup, goLoadLimit(rate, o.warmup, egressConns)
	w := runGoLoad(ctx, warm) // unmeasured, but counted: a packet lost in the warm-up is lost
	if err := peer.settle(ctx, callbackWait); err != nil {
		return egressRun{}, err
	}

	load.duration, load.limit = o.duration, goLoadLimit(rate, o.duration, egressConns)
	self0, edge0, peer0 := selfCPU(), b.usage(srv), groupCPU(peer.proc)
	r := runGoLoad(ctx, load)
	// The draft 3 peer's last callbacks may still be finishing as the
	// edge relays their replies: their CPU is the exchange's.
	settleErr := peer.settle(ctx, callbackWait)
	self1, edge1, peer1 := selfCPU(), b.usage(srv), groupCPU(peer.proc)
	after, err := peer.stats()
	if err != nil {
		return egressRun{}, err
	}
	if settleErr != nil {
		log.Printf("%s, %s: %v", idEgress, egressRunName(path, rate), settleErr) // counted below, as lost or refused
	}
	both := goLoadResult{sent: w.sent + r.sent, ok: w.ok + r.ok, failed: w.failed + r.failed, failure: cmp.Or(w.failure, r.failure)}

	run := egressRun{
		sample: sample{
			packets:  r.ok,
			pps:      r.pps(),
			proxyCPU: perPacket(edge1.cpu-edge0.cpu, r.ok),
			proxySys: perPacket(edge1.sys-edge0.sys, r.ok),
			stubCPU:  perPacket(peer1-peer0, r.ok),
			p50:      r.p50, p99: r.p99,
			peakMB: float64(edge1.peakKB) / 1024,
		},
		connectorCPU:  perPacket(self1-self0, r.ok),
		tally:         egressCount(both, after.minus(start)),
		peerConns:     after.Conns,
		peerClosed:    after.Closed,
		callbackConns: after.CallbackConns, callbackClosed: after.CallbackClosed,
	}
	if srv.proc == nil {
		run.proxyCPU, run.proxySys = math.NaN(), math.NaN()
	}
	run.failures = run.tally.failures()
	if run.failures > 0 || after.Undelivered > 0 || after.Retries > 0 {
		log.Printf("%s, %s: %+v (connector's first failure: %s); peer: %+v", idEgress, egressRunName(path, rate),
			run.tally, both.failure, after)
	}
	if srv.proc != nil {
		if n, first := errorLines(srv.proc.Log); n > 0 {
			// Not a failure by itself (the counts are), but worth a look.
			log.Printf("%s, %s: the edge logged %d errors; the first: %s", idEgress, egressRunName(path, rate), n, first)
		}
	}
	return run, nil
}

// errorLines counts the lines of Caddy's log at path logged at level
// error or above, and returns the first.
func errorLines(path string) (int, string) {
	text, _ := os.ReadFile(path)
	n, first := 0, ""
	for _, line := range strings.Split(string(text), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"fatal"`) ||
			strings.Contains(line, `"level":"panic"`) {
			if n++; n == 1 {
				first = line
			}
		}
	}
	return n, first
}

// startEgressEdge runs ./cmd/caddy as the fleet's edge toward peer: in a
// Caddy site (the ilp app's front door serves ilp_edge and ilp_proxy
// only), ilp_edge authenticating the fleet by its token, then
// ilp_egress; for the draft 3 peer, a second site on a port of its own
// takes the peer's replies (ilp_edge with `replies`), as an edge's
// public route would.
func (b *bench) startEgressEdge(dir string, path egressPath, peer *egressPeerProc) (*server, error) {
	port, repliesPort := freePort(), freePort()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg := egressCaddyfile(admin, port, repliesPort, path, peer.url)
	srv, err := startCaddyfile(b, dir, cfg)
	if err != nil {
		return nil, err
	}
	srv.h1, srv.admin = fmt.Sprintf("http://127.0.0.1:%d", port), admin
	return srv, nil
}

// egressCaddyfile is the edge's Caddyfile: caddyGlobal's options and the
// peer in ilp_peers, the fleet's site on port and, toward the draft 3
// peer, the replies route on repliesPort.
func egressCaddyfile(admin string, port, repliesPort int, path egressPath, peerURL string) string {
	async, egressOpts, replies := "", "", ""
	if path == egressAsync {
		// callback_url in the peer's block is where the edge would
		// answer the peer's own asynchronous Prepares (mode async needs
		// one): none are sent here.
		async = fmt.Sprintf("\t\t\tmode async\n\t\t\tcallback_url %s/callbacks\n", strings.TrimSuffix(peerURL, "/ilp"))
		egressOpts = fmt.Sprintf(" {\n\t\tcallback_url http://127.0.0.1:%d/ilp/replies\n\t}", repliesPort)
		replies = fmt.Sprintf(`:%d {
	bind 127.0.0.1
	ilp_edge {
		address g.bench.edge
		peers %s
		replies
	}
}
`, repliesPort, path.peerName())
	}
	// The ilp_peers option joins caddyGlobal's block.
	global := strings.TrimSuffix(caddyGlobal(admin), "}\n") + fmt.Sprintf(`	ilp_peers {
		peer %s {
			token %s
%s			url %s
			callback_token %s
		}
	}
}
`, path.peerName(), benchPeerToken, async, peerURL, benchCallbackToken)
	return global + fmt.Sprintf(`:%d {
	bind 127.0.0.1
	ilp_edge {
		address g.bench.edge
		peer fleet {
			token %s
		}
	}
	ilp_egress%s
}
`, port, benchToken, egressOpts) + replies
}

// egressPeerProc is a running peer, the harness itself run with
// egressPeerCommand.
type egressPeerProc struct {
	proc    *proc.Process
	url     string // where Prepares go
	control string // its counters, on a listener of their own so that reading them opens no connection the figures count
}

// startEgressPeer runs the harness' own binary as the peer: synchronous
// (the Fulfill in the 200) or draft 3 (202, then the Fulfill by
// callback), answering with the stubs' Fulfill, taking only requests
// with the Authorization auth.
func (b *bench) startEgressPeer(ctx context.Context, dir string, async bool, auth string) (*egressPeerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, control := fmt.Sprintf("127.0.0.1:%d", freePort()), fmt.Sprintf("127.0.0.1:%d", freePort())
	args := []string{egressPeerCommand, "-listen", addr, "-control", control, "-auth", auth,
		"-callback-auth", "Bearer " + benchPeerToken, "-fulfill", hex.EncodeToString(b.fulfill)}
	if async {
		args = append(args, "-async")
	}
	p, err := proc.Start(dir, "egress-peer", nil, self, args...)
	if err != nil {
		return nil, err
	}
	peer := &egressPeerProc{proc: p, url: "http://" + addr + "/ilp", control: "http://" + control}
	if err := p.WaitReady(ctx, 10*time.Second, func() error { _, err := peer.stats(); return err }); err != nil {
		p.Stop()
		return nil, err
	}
	return peer, nil
}

// stats reads the peer's counters.
func (p *egressPeerProc) stats() (peerStats, error) {
	var s peerStats
	res, err := h1Client.Get(p.control + "/stats")
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return s, fmt.Errorf("peer's counters: %s", res.Status)
	}
	return s, json.NewDecoder(res.Body).Decode(&s)
}

// settle waits until the peer has no callback in flight, for at most
// timeout.
func (p *egressPeerProc) settle(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s, err := p.stats()
		if err != nil {
			return err
		}
		if s.InFlight == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the peer still has %d callbacks in flight after %v", s.InFlight, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// selfCPU is the CPU the harness' process has used so far: in the
// egress runs, the load generator's, "the connector".
func selfCPU() time.Duration {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, utime, stime, ok := parseStat(stat)
	if !ok {
		return 0
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// groupCPU is the CPU p's process group has used so far.
func groupCPU(p *proc.Process) time.Duration {
	u, _ := groupUsage(p.Cmd.Process.Pid)
	return u.cpu
}

// peerStats is the peer's counters, as its control listener serves them.
type peerStats struct {
	Prepares    int64 `json:"prepares"`    // Prepares answered: the Fulfill in a 200, or a 202
	IDs         int64 `json:"ids"`         // distinct Request-Ids among them (draft 3)
	Refused     int64 `json:"refused"`     // requests answered 4xx: credential, method, not a Prepare, no Request-Id or Callback-Url
	Replies     int64 `json:"replies"`     // replies by callback the edge took (200)
	Rejected    int64 `json:"rejected"`    // replies by callback the edge refused (another status than 5xx)
	Undelivered int64 `json:"undelivered"` // replies by callback never taken: no answer, or 5xx, to the last try
	Retries     int64 `json:"retries"`     // tries of a reply by callback after its first
	InFlight    int64 `json:"in_flight"`   // replies by callback not done yet
	Conns       int64 `json:"conns"`       // TCP connections accepted on the Prepares' listener
	Closed      int64 `json:"closed"`      // of them, closed
	// CallbackConns is the connections opened to the edge's replies
	// route: as many as replies were in flight at the busiest, without
	// churn.
	CallbackConns  int64 `json:"callback_conns"`
	CallbackClosed int64 `json:"callback_closed"` // of them, closed
}

// minus is the Prepares and replies counted between o and s; the
// connections and the callbacks in flight are s's.
func (s peerStats) minus(o peerStats) peerStats {
	d := s
	d.Prepares -= o.Prepares
	d.IDs -= o.IDs
	d.Refused -= o.Refused
	d.Replies -= o.Replies
	d.Rejected -= o.Rejected
	d.Undelivered -= o.Undelivered
	d.Retries -= o.Retries
	return d
}

// runEgressPeer is the harness run as the egress rows' peer, with args
// after egressPeerCommand. It serves until killed (the harness stops it
// with SIGTERM, whose default ends the process).
func runEgressPeer(args []string) {
	fs := flag.NewFlagSet(egressPeerCommand, flag.ExitOnError)
	listen := fs.String("listen", "", "where Prepares come (loopback host:port)")
	control := fs.String("control", "", "where GET /stats serves the counters (loopback host:port)")
	async := fs.Bool("async", false, "speak RFC 35 draft 3: 202, then the Fulfill by callback")
	auth := fs.String("auth", "", "the Authorization a Prepare must carry")
	callbackAuth := fs.String("callback-auth", "", "the Authorization of the replies by callback")
	fulfill := fs.String("fulfill", "", "the Fulfill to answer with, in hex")
	fs.Parse(args)
	body, err := hex.DecodeString(*fulfill)
	if err != nil {
		log.Fatalf("%s: -fulfill: %v", egressPeerCommand, err)
	}
	p := newEgressPeer(*auth, *callbackAuth, body, *async)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("%s: %v", egressPeerCommand, err)
	}
	ctl, err := net.Listen("tcp", *control)
	if err != nil {
		log.Fatalf("%s: %v", egressPeerCommand, err)
	}
	go http.Serve(ctl, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.stats())
	}))
	log.Fatal(p.serve(ln))
}

// egressPeer is the egress rows' peer, written from RFC 35: a Prepare
// with the edge's credential is answered with the same Fulfill (the
// stubs', which matches the benchmark Prepares' condition), in the 200,
// or, as a draft 3 receiver, with a 202 at once and the Fulfill POSTed
// to the Prepare's Callback-Url with its Request-Id and the peer's own
// credential. A Request-Id seen before is answered 202 again and not
// called back twice, as the draft asks of a replay. A reply answered 5xx
// or not at all is tried again, 50 ms doubling, five times. It does no
// more per packet than a peer must, so that the rows measure the edge.
// Not the stub connector, synchronous peer though it is: a stub counts
// nothing it gets (its -log-packets writes a line per packet, which would
// weigh on its CPU), and the synchronous and draft 3 rows should differ
// in the protocol only, not in the peer's program.
type egressPeer struct {
	auth, callbackAuth string
	fulfill            []byte
	async              bool
	srv                *http.Server
	client             *http.Client // the replies by callback, over kept connections

	prepares, refused, replies, rejected, undelivered, retries, inFlight atomic.Int64
	conns, closed, callbackConns, callbackClosed                         atomic.Int64

	mu  sync.Mutex
	ids map[string]bool
}

func newEgressPeer(auth, callbackAuth string, fulfill []byte, async bool) *egressPeer {
	p := &egressPeer{auth: auth, callbackAuth: callbackAuth, fulfill: fulfill, async: async, ids: map[string]bool{}}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			p.callbackConns.Add(1)
			return &countedConn{Conn: c, closed: &p.callbackClosed}, nil
		},
		// However many replies are in flight, each connection is kept
		// (net/http's default of 2 would close the others at every burst).
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				p.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				p.closed.Add(1)
			}
		},
	}
	return p
}

func (p *egressPeer) serve(ln net.Listener) error {
	err := p.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (p *egressPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Authorization") != p.auth {
		p.refused.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if _, err := ilpdest.ReadPrepareHeader(body); err != nil {
		p.refused.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !p.async {
		p.prepares.Add(1)
		w.Header()["Content-Type"] = []string{"application/octet-stream"}
		w.Write(p.fulfill)
		return
	}
	id, callback := r.Header.Get("Request-Id"), r.Header.Get("Callback-Url")
	if id == "" || callback == "" {
		p.refused.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.prepares.Add(1)
	p.mu.Lock()
	replay := p.ids[id]
	p.ids[id] = true
	p.mu.Unlock()
	if !replay {
		p.inFlight.Add(1)
		go p.callBack(callback, id)
	}
	w.WriteHeader(http.StatusAccepted)
}

// callBack POSTs the Fulfill for id to callback until the edge answers
// other than 5xx, or the tries run out.
func (p *egressPeer) callBack(callback, id string) {
	defer p.inFlight.Add(-1)
	wait := 50 * time.Millisecond
	for try := 1; ; try++ {
		status := p.postReply(callback, id)
		switch {
		case status == http.StatusOK:
			p.replies.Add(1)
			return
		case status != 0 && status < 500:
			p.rejected.Add(1)
			return
		case try == 5:
			p.undelivered.Add(1)
			return
		}
		p.retries.Add(1)
		time.Sleep(wait)
		wait *= 2
	}
}

// postReply makes one try; 0 is no answer.
func (p *egressPeer) postReply(callback, id string) int {
	req, err := http.NewRequest(http.MethodPost, callback, bytes.NewReader(p.fulfill))
	if err != nil {
		return 0
	}
	req.Header = http.Header{
		"Request-Id":    {id},
		"Content-Type":  {"application/octet-stream"},
		"Authorization": {p.callbackAuth},
	}
	res, err := p.client.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // drained, so that the connection is kept
	res.Body.Close()
	return res.StatusCode
}

func (p *egressPeer) stats() peerStats {
	p.mu.Lock()
	ids := int64(len(p.ids))
	p.mu.Unlock()
	return peerStats{
		Prepares: p.prepares.Load(), IDs: ids, Refused: p.refused.Load(), Replies: p.replies.Load(),
		Rejected: p.rejected.Load(), Undelivered: p.undelivered.Load(), Retries: p.retries.Load(),
		InFlight: p.inFlight.Load(), Conns: p.conns.Load(), Closed: p.closed.Load(),
		CallbackConns: p.callbackConns.Load(), CallbackClosed: p.callbackClosed.Load(),
	}
}

// countedConn counts its closing, once, in closed: by the peer, or after
// the edge closed its end.
type countedConn struct {
	net.Conn
	once   sync.Once
	closed *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.Conn.Close()
}
