package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestProxyReloadUnderLoad sends packets at a steady rate through
// ./cmd/caddy with ilp_proxy while the config is reloaded three times, and
// checks that every packet is fulfilled, none lost to a reset peer
// connection, and that the connectors saw no reconnect storm: ilp_proxy's
// connection pools outlive each config. In a Caddy site the listener is a
// sharedtcp one, handed from config to config; in the ilp app's front
// door, the stopping config hands its connections to the new one.
func TestProxyReloadUnderLoad(t *testing.T) {
	for _, door := range []string{"site", "front door"} {
		t.Run(door, func(t *testing.T) { testProxyReloadUnderLoad(t, door == "front door") })
	}
}

func testProxyReloadUnderLoad(t *testing.T, frontDoor bool) {
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var upstreams []string
	for range 3 {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			w.Write(ilpdest.AppendFulfill(nil, make([]byte, 32), []byte("ok")))
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		upstreams = append(upstreams, srv.URL)
	}

	port, admin := freePort(t), freePort(t)
	config := func(maxHold int) string {
		handlers := fmt.Sprintf(`ilp_edge {
		address test.edge
		peer alice {
			token %s
		}
	}
	ilp_proxy %s {
		max_hold %ds
	}`, aliceToken, strings.Join(upstreams, " "), maxHold)
		if frontDoor {
			return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tilp {\n\t\tserver sharedtcp/127.0.0.1:%d {\n\t%s\n\t\t}\n\t}\n}\n",
				admin, port, handlers)
		}
		return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}

http://127.0.0.1:%d {
	bind sharedtcp/127.0.0.1
	%s
}
`, admin, port, handlers)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(config(20)), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, bin, "run", "--config", path, "--adapter", "caddyfile")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// Two senders open a new connection per packet, so that their packets
	// go through the listener's handoff; two keep theirs alive, as
	// ilp-plugin-http does, so that the old config closes them as idle
	// while they are in use. Neither kind of client resends anything.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	kept := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	sendOne := func(client *http.Client, dest string) error {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(ilptest.Prepare(dest, 30*time.Second)))
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		if typ, _ := ilpdest.ReadResponseType(reply); resp.StatusCode != 200 || typ != ilpdest.TypeFulfill {
			code, _ := ilpdest.ReadRejectCode(reply)
			return fmt.Errorf("HTTP %d, %v %s", resp.StatusCode, typ, code)
		}
		return nil
	}
	for deadline := time.Now().Add(20 * time.Second); sendOne(fresh, "g.warm.up") != nil; {
		if time.Now().After(deadline) {
			t.Fatal("edge did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Steady load: 4 senders, one packet every 5 ms each, to 40 prefixes.
	stop := make(chan struct{})
	var sent, failed atomic.Int32
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				sent.Add(1)
				dest := fmt.Sprintf("g.usd.acct%d.x", (s*10+i)%40)
				client := fresh
				if s%2 == 1 {
					client = kept
				}
				if err := sendOne(client, dest); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	before := accepted.Load()
	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(path, []byte(config(20+i)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "reload", "--config", path, "--adapter", "caddyfile",
			"--address", fmt.Sprintf("127.0.0.1:%d", admin)).CombinedOutput()
		if err != nil {
			t.Fatalf("caddy reload: %v\n%s", err, out)
		}
		time.Sleep(400 * time.Millisecond)
	}
	reconnects := accepted.Load() - before
	close(stop)
	wg.Wait()

	t.Logf("%d packets across 3 reloads; %d new connections to the connectors during the reloads", sent.Load(), reconnects)
	if failed.Load() != 0 {
		t.Errorf("%d of %d packets failed; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() < 500 {
		t.Errorf("only %d packets sent: the load was not steady", sent.Load())
	}
	// Without shared pools every reload dials every connector anew: at
	// least 9 connections. With them, only the extra concurrency while
	// two configs overlap needs a new one.
	if reconnects >= 9 {
		t.Errorf("%d new connections during 3 reloads: the pools did not survive", reconnects)
	}
}
