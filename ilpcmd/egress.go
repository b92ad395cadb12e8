package ilpcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// adminTimeout bounds one request to the admin endpoint: it answers from
// memory, so a wait longer than this is an edge (or a port) that is stuck,
// and an operator is better told so than left at a silent prompt.
const adminTimeout = 10 * time.Second

// adminErrorBody is how much of an admin endpoint's error body an error
// message quotes: enough for Caddy's one-line JSON error, short enough
// that an HTML page from whatever else listens on the port stays readable.
const adminErrorBody = 200

func egressCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "egress --admin <host:port> [--json]",
		Short: "Show each running ilp_egress: its callback URL and its peers, their mode and the replies they owe",
		Long: `
Asks the running edge (its admin endpoint's /ilp/egress) and prints, for
each ilp_egress handler: its path prefix, the callback URL its draft 3
peers are given and, with the ilp_peers app's redis, this edge's name in
it; then its peers sorted by name, each with its mode (sync, or async for
RFC 35 draft 3), the asynchronous exchanges waiting for the peer's reply
now ('-' for a synchronous peer, which owes none), and its URL without the
query, where a peer may keep a secret.

With --json, prints the admin endpoint's answer as it is.`,
		Args: cobra.NoArgs,
	}
	admin := cmd.Flags().String("admin", "", "the running edge's admin endpoint, e.g. localhost:2019")
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *admin == "" {
			return errors.New("--admin is required: what ilp_egress sends where is known only to a running edge")
		}
		body, err := getAdmin(*admin, "/ilp/egress")
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := cmd.OutOrStdout().Write(body)
			return err
		}
		var egresses []egressView
		if err := json.Unmarshal(body, &egresses); err != nil {
			return fmt.Errorf("%s/ilp/egress: not the answer of an edge with ilp_egress: %w", *admin, err)
		}
		printEgresses(cmd.OutOrStdout(), egresses)
		return nil
	}
	return cmd
}

// egressView is one ilp_egress in the admin endpoint's answer; the
// command's own copy of egress.egressStatus, which that package does not
// export, so that it reads what any version of the edge serves.
type egressView struct {
	PathPrefix  string     `json:"path_prefix"`
	CallbackURL string     `json:"callback_url"`
	Edge        string     `json:"edge"`
	Peers       []peerView `json:"peers"`
}

// peerView is one of an ilp_egress' peers in the admin endpoint's answer.
type peerView struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Mode    string `json:"mode"`
	Waiting int    `json:"waiting"`
}

// getAdmin returns the body of the running edge's 200 answer to GET path
// on its admin endpoint, or an error that says which endpoint failed how.
func getAdmin(admin, path string) ([]byte, error) {
	client := &http.Client{Timeout: adminTimeout}
	res, err := client.Get("http://" + admin + path)
	if err != nil {
		return nil, fmt.Errorf("asking the edge's admin endpoint at %s (is the edge running, with admin there?): %w", admin, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s%s: %w", admin, path, err)
	}
	if res.StatusCode != http.StatusOK {
		// A 404 is most likely an edge built without this plugin version's
		// admin module; the body says so in Caddy's words.
		return nil, fmt.Errorf("%s%s: HTTP %d: %s", admin, path, res.StatusCode, cut(strings.TrimSpace(string(body)), adminErrorBody))
	}
	return body, nil
}

// cut shortens s to at most n bytes, marking that it did, without
// splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 { // a continuation byte
		n--
	}
	return s[:n] + "…"
}

// printEgresses writes one block per ilp_egress, in the admin endpoint's
// order (during a reload the old config's handler is listed too, until it
// is cleaned up, so two blocks may have the same path prefix).
func printEgresses(w io.Writer, egresses []egressView) {
	if len(egresses) == 0 {
		fmt.Fprintln(w, "no ilp_egress is running on this edge")
		return
	}
	for i, e := range egresses {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "ilp_egress at %s\n", e.PathPrefix)
		callback := e.CallbackURL
		if callback == "" {
			callback = "none (needed only by async peers)"
		}
		fmt.Fprintf(w, "  callback URL: %s\n", callback)
		if e.Edge != "" {
			fmt.Fprintf(w, "  edge:         %s (this instance, named in the callback URL)\n", e.Edge)
		}
		if len(e.Peers) == 0 {
			fmt.Fprintln(w, "  no peers: no peer of ilp_peers has a url")
			continue
		}
		// The edge sorts them too; sorting here keeps the table stable
		// whatever the edge's version does.
		peers := append([]peerView(nil), e.Peers...)
		sort.SliceStable(peers, func(a, b int) bool { return peers[a].Name < peers[b].Name })
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tMODE\tWAITING\tURL")
		for _, p := range peers {
			// A synchronous peer answers on the request: nothing can wait
			// for it, and a 0 there would read as "none right now".
			waiting := "-"
			if p.Mode != "sync" {
				waiting = strconv.Itoa(p.Waiting)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Name, p.Mode, waiting, p.URL)
		}
		tw.Flush()
	}
}
