package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testOptions(t *testing.T) options {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return options{root: root, destinations: 30, perPrefix: 10}
}

// TestDemo runs `make demo`'s program: it fails on its own if a prefix
// is not sticky, a packet is lost or gets an HTTP error, or a prefix that
// was not on the killed connector moves.
func TestDemo(t *testing.T) {
	o := testOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	report := out.String()
	if rows := strings.Count(report, "\ng.demo.receiver-"); rows != 2*o.destinations {
		t.Errorf("report has %d prefix rows, want %d\n%s", rows, 2*o.destinations, report)
	}
	if !strings.Contains(report, "(moved)") || !strings.Contains(report, "no HTTP errors") {
		t.Errorf("report does not show the kill:\n%s", report)
	}
}

// TestCaddyfileExample checks that Caddyfile.example is `caddy fmt`-clean
// and that the built binary adapts and validates it, with every module
// the file is there to show, and no secret in the adapted config.
func TestCaddyfileExample(t *testing.T) {
	o := testOptions(t)
	dir := t.TempDir()
	caddy, _, err := build(context.Background(), o, dir)
	if err != nil {
		t.Fatal(err)
	}
	example := filepath.Join(o.root, "Caddyfile.example")
	env, err := newEdgeEnv(dir, []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"})
	if err != nil {
		t.Fatal(err)
	}
	caddyCmd := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(caddy, args...)
		cmd.Env = append(os.Environ(), env.list()...)
		cmd.Env = append(cmd.Env, "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.Bytes()
	}

	want, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if got := caddyCmd("fmt", example); !bytes.Equal(got, want) {
		t.Error("Caddyfile.example is not `caddy fmt` clean: run `caddy fmt --overwrite Caddyfile.example`")
	}

	adapted := caddyCmd("adapt", "--config", example, "--adapter", "caddyfile")
	var cfg any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatalf("adapt output is not JSON: %v", err)
	}
	for _, want := range []string{
		`"handler":"ilp_edge"`, `"handler":"ilp_proxy"`, `"policy":"ilp_prefix"`, `"handler":"metrics"`,
		`"mode":"verify_if_given"`, `"path":["/settlement/*"]`, `"health_uri":"/health"`, `"fail_duration":10000000000`,
		`"client_certs":["` + env.vars["CAROL_CERT_SHA256"] + `"]`, `"tokens":["{env.ALICE_TOKEN}"]`,
	} {
		if !bytes.Contains(adapted, []byte(want)) {
			t.Errorf("adapted config lacks %s", want)
		}
	}
	for _, secret := range []string{"ALICE_TOKEN", "BOB_JWT_SECRET", "BOB_AT_CONNECTOR"} {
		if bytes.Contains(adapted, []byte(env.vars[secret])) {
			t.Errorf("the value of %s is in the adapted config; secrets must stay {env.*} placeholders", secret)
		}
	}

	caddyCmd("validate", "--config", example, "--adapter", "caddyfile")

	// What routes money has no default: without it the file does not
	// adapt, and the error says why.
	for name, hint := range map[string]string{
		"ILP_CONNECTORS":    "is the variable that lists them set?",
		"ILP_EDGE_ADDRESS":  "is the variable set?",
		"ILP_FLEET_ADDRESS": "is the variable set?",
	} {
		cmd := exec.Command(caddy, "adapt", "--config", example, "--adapter", "caddyfile")
		for _, kv := range append(os.Environ(), env.list()...) {
			if !strings.HasPrefix(kv, name+"=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), hint) {
			t.Errorf("without %s: adapt gave %v, want an error with %q:\n%s", name, err, hint, out)
		}
	}
}
