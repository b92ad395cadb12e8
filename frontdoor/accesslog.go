package frontdoor

import (
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// accessLoggerName is the logger a front door's access log lines are
// written to, as a site's go to http.log.access: Caddy's `log` global
// option routes them (`include ilp.log.access`).
const accessLoggerName = "log.access"

// ilpLogFields are the packet's placeholders an access log line carries,
// under the names Caddyfile.example gives them in a site's access log.
var ilpLogFields = []struct{ field, placeholder string }{
	{"ilp_destination", "http.ilp.destination"},
	{"ilp_amount", "http.ilp.amount"},
	{"ilp_result", "http.ilp.result"},
	{"ilp_code", "http.ilp.code"},
	{"ilp_triggered_by", "http.ilp.triggered_by"},
	{"ilp_upstream", "http.ilp.upstream"},
	{"ilp_rerouted", "http.ilp.rerouted"},
	{"ilp_request_id", "http.ilp.request_id"}, // asynchronous Prepares only
}

// logAccess writes one access log line for the request the exchange
// answered: what Caddy's access log has for a site (the request, the
// peer as user_id, status, size, duration), and what the peer got. No
// header is logged, so no credential is.
func (s *Server) logAccess(ex *exchange, status int, start time.Time) {
	level := zap.InfoLevel
	if status >= http.StatusInternalServerError {
		level = zap.ErrorLevel
	}
	c := s.accessLog.Check(level, "handled request")
	if c == nil {
		return
	}
	r := ex.req
	fields := make([]zap.Field, 0, 6+len(ilpLogFields))
	fields = append(fields,
		zap.Object("request", loggableRequest{r}),
		zap.Duration("duration", time.Since(start)),
		zap.Int("size", ex.resp.size),
		zap.Int("status", status))
	if v, ok := ex.ctx.repl.GetString("http.auth.user.id"); ok {
		fields = append(fields, zap.String("user_id", v))
	}
	for _, f := range ilpLogFields {
		if v, ok := ex.ctx.repl.GetString(f.placeholder); ok && v != "" {
			fields = append(fields, zap.String(f.field, v))
		}
	}
	c.Write(fields...)
}

// loggableRequest is the request as Caddy's access log shows it, less
// its headers.
type loggableRequest struct{ r *http.Request }

func (l loggableRequest) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	ip, port, err := net.SplitHostPort(l.r.RemoteAddr)
	if err != nil {
		ip, port = l.r.RemoteAddr, ""
	}
	enc.AddString("remote_ip", ip)
	enc.AddString("remote_port", port)
	enc.AddString("proto", l.r.Proto)
	enc.AddString("method", l.r.Method)
	enc.AddString("host", l.r.Host)
	enc.AddString("uri", l.r.URL.RequestURI())
	if l.r.TLS != nil {
		enc.AddString("tls_server_name", l.r.TLS.ServerName)
	}
	return nil
}
