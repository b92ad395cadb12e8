package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "A Caddyfile for an edge")
	_, block, ok2 := strings.Cut(after, "```caddyfile\n")
	example, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no example Caddyfile")
	}
	golden, err := os.ReadFile("caddyfile_adapt/readme_example.caddytest")
	if err != nil {
		t.Fatal(err)
	}
	tested, _, _ := strings.Cut(string(golden), adaptSeparator)
	if strings.TrimSpace(example) != strings.TrimSpace(tested) {
		t.Errorf("README example differs from caddyfile_adapt/readme_example.caddytest:\n%s", example)
	}
}
