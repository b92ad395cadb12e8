package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// upstreamSet is the upstreams a packet is ranked over: the static ones,
// or the latest answer of the dynamic upstream source.
type upstreamSet struct {
	upstreams []*upstream
	names     []string // upstreams[i].addr, the rendezvous keys
}

// add appends u unless its address is in the set already: two entries
// with one key would share every prefix.
func (s *upstreamSet) add(u *upstream) bool {
	for _, n := range s.names {
		if n == u.addr {
			return false
		}
	}
	s.upstreams = append(s.upstreams, u)
	s.names = append(s.names, u.addr)
	return true
}

// checkDynamic checks dynamic_scheme and dynamic_path by parsing the
// upstream they make, so they follow the static upstreams' rules.
func checkDynamic(scheme, path string) error {
	if path == "" || path[0] != '/' {
		return fmt.Errorf("dynamic_path %q must start with /", path)
	}
	_, err := parseUpstream(scheme + "://dynamic" + path)
	return err
}

// dynamicUpstreams adapts one of reverse_proxy's upstream sources (`a`,
// `srv`, `multi`, …) to ilp_proxy. The sources return fresh
// reverseproxy.Upstream values on every call, so an upstream is known by
// its dial address: as long as the source keeps returning an address, it
// keeps its connection pool and passive health state.
type dynamicUpstreams struct {
	source reverseproxy.UpstreamSource
	proxy  *Proxy

	current atomic.Pointer[upstreamSet]
	mu      sync.Mutex // serializes replacing current
}

// get returns the set for the source's current answer to r. In the
// steady state (the source's answer is unchanged) it takes no lock.
func (d *dynamicUpstreams) get(r *http.Request) (*upstreamSet, error) {
	got, err := d.source.GetUpstreams(r)
	if err != nil {
		return nil, err
	}
	if s := d.current.Load(); s != nil && s.sameAs(got) {
		return s, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.current.Load()
	if old != nil && old.sameAs(got) {
		return old, nil
	}
	next, err := d.build(old, got)
	if err != nil {
		return nil, err
	}
	d.current.Store(next)
	d.release(old, next)
	if c := d.proxy.logger.Check(zap.InfoLevel, "dynamic upstreams changed"); c != nil {
		c.Write(zap.Strings("upstreams", next.names))
	}
	return next, nil
}

// sameAs reports whether the source answered with exactly this set's
// addresses, in this order.
func (s *upstreamSet) sameAs(got []*reverseproxy.Upstream) bool {
	if len(got) != len(s.names) {
		return false
	}
	for i, u := range got {
		if u.Dial != s.names[i] {
			return false
		}
	}
	return true
}

// build makes the set for the source's answer got, reusing the upstreams
// of old that are still in it. An address the source repeats is kept
// once, so a repeat is not "the same answer" and build runs again; a
// source that repeats is rare enough for that not to matter.
func (d *dynamicUpstreams) build(old *upstreamSet, got []*reverseproxy.Upstream) (*upstreamSet, error) {
	known := make(map[string]*upstream)
	if old != nil {
		for _, u := range old.upstreams {
			known[u.addr] = u
		}
	}
	next := &upstreamSet{}
	var made []*upstream // acquired by this call: released if it fails
	for _, g := range got {
		u, ok := known[g.Dial]
		if !ok {
			var err error
			if u, err = d.proxy.newUpstream(d.proxy.DynamicScheme + "://" + g.Dial + d.proxy.DynamicPath); err != nil {
				for _, m := range made {
					m.release()
				}
				return nil, fmt.Errorf("dynamic upstream %q: %w", g.Dial, err)
			}
			known[g.Dial] = u
			made = append(made, u)
		}
		next.add(u)
	}
	return next, nil
}

// release gives up the upstreams of old that next no longer has. The
// last config to give one up closes its idle connections and drops its
// metric series, so a churning source (pods coming and going) does not
// leave series behind.
func (d *dynamicUpstreams) release(old, next *upstreamSet) {
	if old == nil {
		return
	}
	kept := make(map[string]bool, len(next.names))
	for _, n := range next.names {
		kept[n] = true
	}
	for _, u := range old.upstreams {
		if !kept[u.addr] {
			if u.release() && u.metrics != nil {
				deleteUpstreamMetrics(u.addr)
			}
		}
	}
}

// close releases every upstream of the current set.
func (d *dynamicUpstreams) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.current.Swap(nil); s != nil {
		for _, u := range s.upstreams {
			u.release()
		}
	}
}
