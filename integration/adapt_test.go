package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the JSON half of caddyfile_adapt/*.caddytest")

const adaptSeparator = "\n----------\n"

// TestCaddyfileAdapt adapts each caddyfile_adapt/*.caddytest Caddyfile and
// compares the result with the JSON below its separator, so a change in
// what a Caddyfile means shows up in review.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("caddyfile_adapt/*.caddytest")
	if len(files) == 0 {
		t.Fatal("no adapt tests found")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(raw), adaptSeparator)
			if !ok {
				t.Fatalf("no %q separator", strings.TrimSpace(adaptSeparator))
			}
			got, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile+"\n"), map[string]any{"filename": file})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings: %v", warnings)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(caddyfile+adaptSeparator+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(pretty.String()) != strings.TrimSpace(want) {
				t.Errorf("adapted JSON differs:\n%s", pretty.String())
			}
		})
	}
}

// TestReadmeExample keeps the README's example Caddyfile identical to the
// one TestCaddyfileAdapt adapts, so the README cannot drift from a config
// that works.
// readmeExample matches a README Caddyfile introduced by the name of the
// golden file that adapts it.
var readmeExample = regexp.MustCompile("(?s)`integration/caddyfile_adapt/([a-z_]+)\\.caddytest`[^\n]*:\n\n```caddyfile\n(.*?)```")

// TestReadmeExamples checks that every full Caddyfile in the README is one
// that TestAdapt adapts.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := readmeExample.FindAllStringSubmatch(string(readme), -1)
	if len(examples) < 2 {
		t.Fatalf("found %d README examples naming their golden file, want the edge and ilp_proxy examples", len(examples))
	}
	for _, m := range examples {
		golden, err := os.ReadFile("caddyfile_adapt/" + m[1] + ".caddytest")
		if err != nil {
			t.Fatal(err)
		}
		tested, _, _ := strings.Cut(string(golden), adaptSeparator)
		if strings.TrimSpace(m[2]) != strings.TrimSpace(tested) {
			t.Errorf("README example differs from caddyfile_adapt/%s.caddytest:\n%s", m[1], m[2])
		}
	}
}
