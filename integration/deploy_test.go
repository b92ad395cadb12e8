package integration

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked without a Docker daemon (this
// machine has none): the build stage's Go is the one go.mod asks for, the
// binary is built as ./xcaddy.sh builds it, and the image runs as non-root
// with the operator's Caddyfile.
func TestDockerfile(t *testing.T) {
	docker := readFile(t, "../Dockerfile")
	gomod := readFile(t, "../go.mod")
	want := regexp.MustCompile(`(?m)^go (1\.\d+)`).FindStringSubmatch(gomod)
	got := regexp.MustCompile(`(?m)^FROM golang:(1\.\d+)-`).FindStringSubmatch(docker)
	if want == nil || got == nil || got[1] != want[1] {
		t.Errorf("Dockerfile builds with Go %v, go.mod asks for %v", got, want)
	}
	for _, line := range []string{"RUN OUTPUT=/out/caddy ./xcaddy.sh build", "USER nonroot",
		`CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]`} {
		if !strings.Contains(docker, line) {
			t.Errorf("Dockerfile lacks %q", line)
		}
	}
}

// TestSystemdUnit: the unit reloads with the same Caddyfile, adapter and
// environment file it starts with, and never prints the environment (it
// holds the secrets) into the journal.
func TestSystemdUnit(t *testing.T) {
	unit := readFile(t, "../deploy/caddy-ilp.service")
	value := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("the unit has no %s=", key)
		}
		return m[1]
	}
	start, reload := value("ExecStart"), value("ExecReload")
	const args = "--config /etc/caddy/Caddyfile --adapter caddyfile"
	if !strings.HasSuffix(start, " run "+args) || !strings.Contains(reload, " reload "+args) {
		t.Errorf("ExecStart %q and ExecReload %q do not load the same config the same way", start, reload)
	}
	if value("EnvironmentFile") != "/etc/caddy/edge.env" || strings.Contains(unit, "--environ") {
		t.Error("the settings must come from /etc/caddy/edge.env, and never be printed")
	}
	if value("User") == "root" {
		t.Error("the edge runs as root")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
