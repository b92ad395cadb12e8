package ilpcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/handler/proxy"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func routeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route <ilp-address> [--peer <name>] [--config <file> [--adapter <name>] | --admin <host:port>] [--json]",
		Short: "Show which upstream each ilp_proxy and ilp_prefix in a config sends an address to",
		Long: `
Loads the config as 'caddy run' would (the Caddyfile in the current
directory without --config) and, for every ilp_proxy handler and every
reverse_proxy with lb_policy ilp_prefix in it, prints the routing key the
address has there and the upstreams in the order they are chosen: the first
healthy one gets the packet. The ranking is the data path's own.
Dynamic upstreams are known only to the running edge and are not listed.
A forwarder whose key is peer or peer_destination ranks by the peer too:
give it with --peer (without, the destination alone, as for a packet
that came through no ilp_edge).

With --admin, asks the running edge instead (its admin endpoint's
/ilp/route): for each ilp_proxy, the upstreams in rank order with their
health now, and the one a packet would go to. reverse_proxy's upstreams
are at the admin endpoint's /reverse_proxy/upstreams.`,
		Args: cobra.ExactArgs(1),
	}
	config := cmd.Flags().StringP("config", "c", "", "config file to load")
	adapter := cmd.Flags().StringP("adapter", "a", "", "name of the config adapter, e.g. caddyfile")
	asJSON := cmd.Flags().Bool("json", false, "print JSON")
	admin := cmd.Flags().String("admin", "", "the running edge's admin endpoint, e.g. localhost:2019")
	peer := cmd.Flags().String("peer", "", "the peer that sends the packet, for forwarders whose key is peer or peer_destination")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dest := args[0]
		if !ilpdest.ValidAddress(dest) {
			return fmt.Errorf("%q is not a valid ILP address", dest)
		}
		if *admin != "" {
			return printLiveRoute(cmd.OutOrStdout(), *admin, dest, *peer)
		}
		cfg, _, _, err := caddycmd.LoadConfig(*config, *adapter)
		if err != nil {
			return err
		}
		if len(cfg) == 0 {
			return fmt.Errorf("no config: give --config, or run where a Caddyfile is")
		}
		routes, err := routesIn(cfg, dest, *peer)
		if err != nil {
			return err
		}
		if len(routes) == 0 {
			return fmt.Errorf("the config has no ilp_proxy and no reverse_proxy with lb_policy ilp_prefix")
		}
		if *asJSON {
			out := json.NewEncoder(cmd.OutOrStdout())
			out.SetIndent("", "  ")
			return out.Encode(routes)
		}
		printRoutes(cmd.OutOrStdout(), routes)
		return nil
	}
	return cmd
}

// forwarderRoute is where one forwarder in the config sends an address.
type forwarderRoute struct {
	Server    string   `json:"server"`
	Listen    []string `json:"listen"`
	Forwarder string   `json:"forwarder"` // ilp_proxy, or reverse_proxy (ilp_prefix)
	Location  string   `json:"location"`  // the handler's place in the server's JSON routes
	Segments  int      `json:"prefix_segments"`
	handler.Ranking
	Dynamic bool `json:"dynamic_upstreams,omitempty"`
}

// routesIn finds every ILP-routing forwarder in a JSON config and ranks
// its upstreams for a packet from peer to dest.
func routesIn(cfg []byte, dest, peer string) ([]forwarderRoute, error) {
	var doc struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string        `json:"listen"`
					Routes json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &doc); err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	names := make([]string, 0, len(doc.Apps.HTTP.Servers))
	for name := range doc.Apps.HTTP.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	var found []forwarderRoute
	for _, name := range names {
		srv := doc.Apps.HTTP.Servers[name]
		var routes any
		if len(srv.Routes) > 0 {
			if err := json.Unmarshal(srv.Routes, &routes); err != nil {
				return nil, fmt.Errorf("server %s: %w", name, err)
			}
		}
		err := walk(routes, "routes", func(where string, m map[string]any) error {
			r, ok, err := routeOf(m, dest, peer)
			if err != nil {
				return fmt.Errorf("server %s, %s: %w", name, where, err)
			}
			if ok {
				r.Server, r.Listen, r.Location = name, srv.Listen, where
				found = append(found, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

// walk calls f on every JSON object under v, with its path.
func walk(v any, where string, f func(where string, m map[string]any) error) error {
	switch v := v.(type) {
	case map[string]any:
		if err := f(where, v); err != nil {
			return err
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := walk(v[k], where+"."+k, f); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := walk(e, fmt.Sprintf("%s[%d]", where, i), f); err != nil {
				return err
			}
		}
	}
	return nil
}

// routeOf ranks a packet from peer to dest on m if m is an ilp_proxy
// handler or a reverse_proxy with the ilp_prefix policy.
func routeOf(m map[string]any, dest, peer string) (forwarderRoute, bool, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return forwarderRoute{}, false, err
	}
	switch m["handler"] {
	case "ilp_proxy":
		var p proxy.Proxy
		if err := json.Unmarshal(raw, &p); err != nil {
			return forwarderRoute{}, false, err
		}
		keys, err := p.RoutingKeys()
		if err != nil {
			return forwarderRoute{}, false, err
		}
		return forwarderRoute{Forwarder: "ilp_proxy", Segments: p.RoutingSegments(),
			Ranking: handler.RankUpstreams(p.Key, peer, dest, p.RoutingSegments(), keys), Dynamic: m["dynamic_upstreams"] != nil}, true, nil
	case "reverse_proxy":
		var rp struct {
			Upstreams []struct {
				Dial string `json:"dial"`
			} `json:"upstreams"`
			LoadBalancing struct {
				SelectionPolicy json.RawMessage `json:"selection_policy"`
			} `json:"load_balancing"`
		}
		if err := json.Unmarshal(raw, &rp); err != nil {
			return forwarderRoute{}, false, err
		}
		var policy struct {
			Policy string `json:"policy"`
			handler.PrefixSelection
		}
		if len(rp.LoadBalancing.SelectionPolicy) > 0 {
			if err := json.Unmarshal(rp.LoadBalancing.SelectionPolicy, &policy); err != nil {
				return forwarderRoute{}, false, err
			}
		}
		if policy.Policy != "ilp_prefix" {
			return forwarderRoute{}, false, nil
		}
		keys := make([]string, 0, len(rp.Upstreams))
		for _, u := range rp.Upstreams {
			keys = append(keys, u.Dial)
		}
		segments := policy.RoutingSegments()
		return forwarderRoute{Forwarder: "reverse_proxy (ilp_prefix)", Segments: segments,
			Ranking: handler.RankUpstreams(policy.Key, peer, dest, segments, keys), Dynamic: m["dynamic_upstreams"] != nil}, true, nil
	}
	return forwarderRoute{}, false, nil
}

// printLiveRoute prints the running edge's answer to GET /ilp/route.
func printLiveRoute(w io.Writer, admin, dest, peer string) error {
	q := url.Values{"address": {dest}}
	if peer != "" {
		q.Set("peer", peer)
	}
	return printAdmin(w, admin, "/ilp/route?"+q.Encode())
}

// printAdmin copies the running edge's answer to GET path on its admin
// endpoint (JSON) to w.
func printAdmin(w io.Writer, admin, path string) error {
	res, err := http.Get("http://" + admin + path)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", admin, res.StatusCode, bytes.TrimSpace(body))
	}
	_, err = w.Write(body)
	return err
}

func printRoutes(w io.Writer, routes []forwarderRoute) {
	for i, r := range routes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s on server %s (%s), at %s\n", r.Forwarder, r.Server, strings.Join(r.Listen, " "), r.Location)
		fmt.Fprintf(w, "  routing key %s (prefix_segments %d)\n", r.Key, r.Segments)
		for rank, u := range r.Upstreams {
			fmt.Fprintf(w, "  %d. %s\n", rank+1, u)
		}
		if r.Dynamic {
			fmt.Fprintln(w, "  and dynamic upstreams, known only to the running edge")
		}
	}
}
