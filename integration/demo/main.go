// Command demo shows caddy-ilp routing packets, in one command (`make
// demo`). It runs Caddy with Caddyfile.example in front of three stub
// connectors on loopback, sends a few hundred Prepares to a few dozen
// destinations as three ilp-plugin-http-style peers would (alice with a
// token over h2c, bob with a JWT and carol with a client certificate over
// HTTPS), and prints which connector each destination prefix went to.
// Then it kills one connector, sends the same packets again, and shows
// that only that connector's prefixes moved, to their next choice, with
// every packet still fulfilled. It stops everything it started.
//
// It exits non-zero if any of that does not hold, so it doubles as a test
// of Caddyfile.example (integration/demo/main_test.go runs it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
)

// options are the demo's flags.
type options struct {
	root         string // the repository: Caddyfile.example and the packages to build
	caddy        string // a Caddy binary to use instead of building ./cmd/caddy
	destinations int
	perPrefix    int // packets sent to each destination prefix per round
}

func main() {
	var o options
	flag.StringVar(&o.caddy, "caddy", "", "Caddy binary with caddy-ilp to run (default: build ./cmd/caddy)")
	flag.IntVar(&o.destinations, "destinations", 30, "destination prefixes")
	flag.IntVar(&o.perPrefix, "packets", 10, "packets per prefix and round")
	flag.Parse()
	log.SetFlags(0)
	root, err := moduleRoot()
	if err != nil {
		log.Fatal(err)
	}
	o.root = root
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		log.Fatalf("demo failed: %v", err)
	}
}

// moduleRoot is the directory of the caddy-ilp go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(out) < 2 {
		return "", errors.New("run the demo from inside the caddy-ilp module")
	}
	return filepath.Dir(string(out[:len(out)-1])), nil
}

// run is the whole demo, writing its report to out.
func run(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "caddy-ilp-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	caddyBin, stubBin, err := build(ctx, o, dir)
	if err != nil {
		return err
	}
	var stubs []*proc.Process
	var names, addrs []string
	defer func() {
		for _, p := range stubs {
			p.Stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		p, addr, err := proc.StartStub(ctx, dir, stubBin, fmt.Sprintf("connector-%d", i))
		if err != nil {
			return err
		}
		stubs = append(stubs, p)
		names = append(names, p.Name)
		addrs = append(addrs, addr)
	}

	env, err := newEdgeEnv(dir, addrs)
	if err != nil {
		return err
	}
	caddy, err := proc.Start(dir, "caddy", env.list(), caddyBin,
		"run", "--config", filepath.Join(o.root, "Caddyfile.example"), "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	defer caddy.Stop()
	// Ready when every peer gets an answer: the HTTPS ones once Caddy
	// has made its local CA and the localhost certificate.
	var peers []*peer
	err = caddy.WaitReady(ctx, 30*time.Second, func() error {
		if peers == nil {
			if peers, err = newPeers(env, dir); err != nil {
				return err
			}
		}
		for _, p := range peers {
			if _, err := p.send(ctx, "g.demo.probe"); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "caddy-ilp demo: Caddy with Caddyfile.example in front of 3 stub connectors on loopback\n")
	for i := range names {
		fmt.Fprintf(out, "  %s at %s\n", names[i], addrs[i])
	}
	fmt.Fprintf(out, "  edge: %s (h2c; reverse_proxy + lb_policy ilp_prefix) and %s (HTTPS; ilp_proxy)\n", env.localURL, env.publicURL)
	fmt.Fprintf(out, "  peers: alice (token, h2c), bob (JWT, HTTPS), carol (client certificate, HTTPS)\n\n")

	dests := destinations(o.destinations)
	before, err := sendRound(ctx, peers, dests, o.perPrefix)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Round 1: %d Prepares to %d destination prefixes, %d per prefix spread over the three peers\n\n",
		len(dests)*o.perPrefix, len(dests), o.perPrefix)
	if err := before.check(nil); err != nil {
		return err
	}
	before.print(out, nil)

	killed, killedAddr := stubs[1], addrs[1]
	killedAt := time.Now()
	killed.Kill()
	stubs = append(stubs[:1], stubs[2:]...)
	after, err := sendRound(ctx, peers, dests, o.perPrefix)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nRound 2: %s killed, the same packets again\n\n", killed.Name)
	if err := after.check(&movedFrom{round: before, connector: killed.Name}); err != nil {
		return err
	}
	after.print(out, before)
	fmt.Fprintf(out, "\n%s\n", after.summary(before, killed.Name))
	return checkAccessLog(caddy.Log, before.fulfilled()+after.fulfilled(), addrs, killedAddr, killedAt)
}

// build compiles Caddy (unless o.caddy names one) and the stub connector
// into dir/bin: dir/caddy is Caddy's storage.
func build(ctx context.Context, o options, dir string) (caddy, stub string, err error) {
	caddy, stub = o.caddy, filepath.Join(dir, "bin", "stubconnector")
	pkgs := map[string]string{stub: "./integration/stubconnector"}
	if caddy == "" {
		caddy = filepath.Join(dir, "bin", "caddy")
		pkgs[caddy] = "./cmd/caddy"
	}
	for bin, pkg := range pkgs {
		log.Printf("go build %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = o.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return caddy, stub, nil
}
