package ilpcmd

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// twoEgresses is an /ilp/egress answer as the edge serves it, with
// bob's peers out of order (the command sorts them itself), an edge name
// from a shared store, and a handler with no callback URL and no peers.
const twoEgresses = `[{"path_prefix":"/peers/","callback_url":"http://edge.example:9082/ilp/replies","edge":"e-3f9a",` +
	`"peers":[{"name":"dave","url":"https://dave.example/ilp","mode":"sync"},` +
	`{"name":"bob","url":"http://bob.example:7770/ilp","mode":"async","waiting":12},` +
	`{"name":"carol-long-name","url":"https://carol.example/","mode":"async"}]},` +
	`{"path_prefix":"/out/","peers":[]}]` + "\n"

// fakeAdmin serves body with status at /ilp/egress, and 404 elsewhere,
// and returns its host:port.
func fakeAdmin(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/ilp/egress" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// runEgress runs `caddy ilp egress` with args and returns what it printed.
func runEgress(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := egressCommand()
	cmd.SilenceUsage = true // as under caddy's root command, which prints the error alone
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestEgressCommandPrintsEachHandlerAndItsPeers(t *testing.T) {
	admin := fakeAdmin(t, http.StatusOK, twoEgresses)
	got, err := runEgress(t, "--admin", admin)
	if err != nil {
		t.Fatal(err)
	}
	want := `ilp_egress at /peers/
  callback URL: http://edge.example:9082/ilp/replies
  edge:         e-3f9a (this instance, named in the callback URL)
  NAME             MODE   WAITING  URL
  bob              async  12       http://bob.example:7770/ilp
  carol-long-name  async  0        https://carol.example/
  dave             sync   -        https://dave.example/ilp

ilp_egress at /out/
  callback URL: none (needed only by async peers)
  no peers: no peer of ilp_peers has a url
`
	if got != want {
		t.Errorf("printed\n%s\nwant\n%s", got, want)
	}
}

func TestEgressCommandJSONIsTheAnswerAsItIs(t *testing.T) {
	admin := fakeAdmin(t, http.StatusOK, twoEgresses)
	got, err := runEgress(t, "--admin", admin, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if got != twoEgresses {
		t.Errorf("--json printed %q, want the answer %q", got, twoEgresses)
	}
}

func TestEgressCommandNoEgress(t *testing.T) {
	got, err := runEgress(t, "--admin", fakeAdmin(t, http.StatusOK, "[]\n"))
	if err != nil || got != "no ilp_egress is running on this edge\n" {
		t.Errorf("printed %q, %v", got, err)
	}
}

func TestEgressCommandErrors(t *testing.T) {
	// A closed port: the error names the endpoint and says it was not
	// reached.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	long := `{"error":"` + strings.Repeat("x", 5000) + `"}`
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"no --admin", nil, []string{"--admin is required"}},
		{"unreachable", []string{"--admin", closed}, []string{"admin endpoint at " + closed, "is the edge running"}},
		{"404", []string{"--admin", fakeAdmin(t, http.StatusNotFound, `{"error":"not found"}`)}, []string{"/ilp/egress: HTTP 404", `{"error":"not found"}`}},
		{"500, long body", []string{"--admin", fakeAdmin(t, http.StatusInternalServerError, long)}, []string{"HTTP 500", `{"error":"xxx`, "…"}},
		{"not JSON", []string{"--admin", fakeAdmin(t, http.StatusOK, "<html>")}, []string{"not the answer of an edge with ilp_egress"}},
	} {
		out, err := runEgress(t, c.args...)
		if err == nil {
			t.Errorf("%s: no error; printed %q", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q, want %q in it", c.name, err, w)
			}
		}
		if len(err.Error()) > adminErrorBody+200 {
			t.Errorf("%s: error of %d bytes, want the body cut short: %.300s", c.name, len(err.Error()), err)
		}
		if out != "" {
			t.Errorf("%s: printed %q with the error", c.name, out)
		}
	}
}

func TestCut(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // é is two bytes: not split
	} {
		if got := cut(c.s, c.n); got != c.want {
			t.Errorf("cut(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
