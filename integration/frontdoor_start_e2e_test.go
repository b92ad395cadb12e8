package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFrontDoorFailedReloadClosesWhatItOpened reloads a running Caddy
// with a front door on two addresses, the second of them taken: the
// reload fails, the running config goes on serving, and the new config's
// first address, which it had opened before the second failed, is closed
// again rather than left listening with nobody to stop it.
func TestFrontDoorFailedReloadClosesWhatItOpened(t *testing.T) {
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := fulfillingConnector(t)
	admin, running, opened := freePort(t), freePort(t), freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	config := func(listen string) string {
		return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tilp {\n\t\tserver %s {\n\t\t\tilp_proxy %s\n\t\t}\n\t}\n}\n",
			admin, listen, hostport(conn))
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(config(fmt.Sprintf("127.0.0.1:%d", running))), 0o600); err != nil {
		t.Fatal(err)
	}
	waitListening(t, start(t, bin, "run", "--config", path, "--adapter", "caddyfile"), running)

	// One server, two addresses: the first is opened, the second fails.
	if err := os.WriteFile(path, []byte(config(fmt.Sprintf("127.0.0.1:%d %s", opened, taken.Addr()))), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "reload", "--config", path, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", admin)).CombinedOutput()
	if err == nil {
		t.Fatalf("the reload onto a taken address succeeded:\n%s", out)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", opened), time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:%d, opened by the config that failed to start, is still listening", opened)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", running), time.Second); err != nil {
		t.Errorf("the running config stopped listening after the failed reload: %v", err)
	} else {
		c.Close()
	}
}
