package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// healthTransport checks http upstreams: the packets' own client sends
// nothing but POSTs.
var healthTransport = &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}

// checkHealthEvery runs the active health checks until ctx ends.
func (p *Proxy) checkHealthEvery(ctx context.Context) {
	t := time.NewTicker(time.Duration(p.HealthInterval))
	defer t.Stop()
	for {
		for _, u := range p.static.upstreams {
			cctx, cancel := context.WithTimeout(ctx, time.Duration(p.HealthTimeout))
			err := u.checkHealth(cctx, p.HealthURI, p.HealthPort)
			cancel()
			if ctx.Err() != nil {
				return
			}
			wasDown := u.state.down.Swap(err != nil)
			cleared := err == nil && u.clearFailures()
			switch {
			case err != nil && !wasDown:
				p.logger.Warn("upstream unhealthy", zap.String("upstream", u.addr), zap.Error(err))
			case err == nil && wasDown:
				p.logger.Info("upstream healthy", zap.String("upstream", u.addr))
			case cleared:
				p.logger.Info("upstream passed its health check; its passive failures are cleared", zap.String("upstream", u.addr))
			}
			if wasDown != (err != nil) || cleared {
				u.metrics.setHealthy(u.healthy(p.maxFails))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkHealth is one active health check: a GET of uri on port (0: u's
// own) that must answer 2xx before ctx ends. h2c and https upstreams are
// checked over their own transport, so an h2c-only backend is asked in
// HTTP/2.
func (u *upstream) checkHealth(ctx context.Context, uri string, port int) error {
	target := u.healthURL(uri, port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	var rt http.RoundTripper = healthTransport
	if u.state.transport != nil {
		rt = u.state.transport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The URL says which port answered: with health_port it is not
		// the upstream's.
		return fmt.Errorf("health check GET %s: HTTP %d", target, resp.StatusCode)
	}
	return nil
}

// healthURL is where u's health check GETs uri: u's host and scheme, and
// port in place of u's own when it is not 0, as reverse_proxy's
// health_port does.
func (u *upstream) healthURL(uri string, port int) string {
	scheme, hostport := u.scheme, u.addr
	if scheme == "h2c" {
		scheme = "http" // the transport speaks HTTP/2 with prior knowledge
	}
	if port != 0 {
		host, _, _ := net.SplitHostPort(u.addr) // parseUpstream always gives host:port
		hostport = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return scheme + "://" + hostport + uri
}
