package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
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

// The Caddyfile blocks of the operator documentation (README.md and
// docs/*.md), by the info string of their fence:
//
//   - caddyfile: a full Caddyfile. The last non-blank line before it must
//     name the golden file that adapts it, as
//     `integration/caddyfile_adapt/<name>.caddytest` and end with a colon,
//     and the block must be that file's Caddyfile half.
//   - caddyfile syntax: a directive's syntax summary, with <placeholders>;
//     not adapted. It must start with a caddy-ilp directive.
//   - caddyfile fragment: a piece of a Caddyfile that cannot stand alone;
//     not adapted.
//
// Any other info string that starts with caddyfile is an error, so no
// Caddyfile escapes the check by a typo. CONTRIBUTING.md lists the blocks
// that are not adapted.
var (
	goldenIntro = regexp.MustCompile("`integration/caddyfile_adapt/([a-z0-9_]+)\\.caddytest`.*:$")
	syntaxStart = regexp.MustCompile(`^(ilp_edge|ilp_proxy|ilp_egress|lb_policy ilp_prefix|ilp|ilp_peers) `)
)

// docCaddyfile is one Caddyfile block of a Markdown file.
type docCaddyfile struct {
	line  int    // of the opening fence, from 1
	info  string // the fence's info string
	intro string // the last non-blank line before the fence
	body  string // with the fence's indentation removed
}

// docCaddyfiles returns the fenced blocks of md whose info string starts
// with caddyfile.
func docCaddyfiles(md string) []docCaddyfile {
	var blocks []docCaddyfile
	lines := strings.Split(md, "\n")
	intro := ""
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		fence := ""
		switch {
		case strings.HasPrefix(trimmed, "```"):
			fence = "```"
		case strings.HasPrefix(trimmed, "~~~"):
			fence = "~~~"
		default:
			if trimmed != "" {
				intro = trimmed
			}
			continue
		}
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
		info := strings.TrimSpace(strings.TrimPrefix(trimmed, fence))
		start := i
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != fence; i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		if info == "caddyfile" || strings.HasPrefix(info, "caddyfile ") {
			blocks = append(blocks, docCaddyfile{line: start + 1, info: info, intro: intro, body: strings.Join(body, "\n")})
		}
		intro = ""
	}
	return blocks
}

// TestReadmeExamples checks every Caddyfile block in README.md and
// docs/*.md: a full Caddyfile must be the Caddyfile half of the golden
// file it names, which TestCaddyfileAdapt adapts, so the documentation
// cannot drift from a config that works.
func TestReadmeExamples(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	if len(docs) == 0 {
		t.Fatal("no ../docs/*.md found")
	}
	checked := map[string]int{}
	for _, file := range append([]string{"../README.md"}, docs...) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(file, "../")
		for _, b := range docCaddyfiles(string(raw)) {
			where := fmt.Sprintf("%s:%d", name, b.line)
			switch b.info {
			case "caddyfile":
				m := goldenIntro.FindStringSubmatch(b.intro)
				if m == nil {
					t.Errorf("%s: a caddyfile block must follow a line naming its golden file "+
						"(`integration/caddyfile_adapt/<name>.caddytest` ... :), or be marked "+
						"`caddyfile syntax` or `caddyfile fragment`; the line before it is %q", where, b.intro)
					continue
				}
				golden, err := os.ReadFile("caddyfile_adapt/" + m[1] + ".caddytest")
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				tested, _, _ := strings.Cut(string(golden), adaptSeparator)
				if strings.TrimSpace(b.body) != strings.TrimSpace(tested) {
					t.Errorf("%s: differs from caddyfile_adapt/%s.caddytest:\n%s", where, m[1], b.body)
					continue
				}
				checked[name]++
			case "caddyfile syntax":
				if !syntaxStart.MatchString(b.body) {
					t.Errorf("%s: a caddyfile syntax block must start with ilp_edge, ilp_proxy, ilp_egress, lb_policy ilp_prefix, ilp or ilp_peers (the global options)", where)
				}
				t.Logf("%s: syntax summary, not adapted", where)
			case "caddyfile fragment":
				t.Logf("%s: fragment, not adapted", where)
			default:
				t.Errorf("%s: unknown info string %q: want caddyfile, caddyfile syntax or caddyfile fragment", where, b.info)
			}
		}
	}
	if checked["README.md"] < 2 {
		t.Errorf("found %d checked Caddyfiles in README.md, want at least the minimal and ilp_proxy examples", checked["README.md"])
	}
	t.Logf("Caddyfiles checked against their golden file: %v", checked)
}
