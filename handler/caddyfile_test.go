package handler

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
	"github.com/ilp-edge/caddy-ilp/store"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	leeway := caddy.Duration(5 * time.Second)
	for _, c := range []struct {
		name, input string
		want        *Edge
		err         string
	}{
		{name: "full", input: `ilp_edge {
			address g.edge
			max_packet_size 32KiB
			min_expiry_window 500ms
			max_hold 20s
			destination_header verify
			peer_header X-Peer
			forward_headers traceparent tracestate
			forward_headers X-Request-Id
			jwt_leeway 5s
			jwt_allow_missing_exp
			rate 10000 per 1m burst 500
			max_packet_amount 18446744073709551615
			redis 127.0.0.1:6379 {
				username edge
				password {env.REDIS_PASSWORD}
				db 2
				key_prefix limits:
				timeout 20ms
				on_store_failure deny
				instances 3
			}
			peer alice {
				token {env.ALICE}
				token second
				upstream_token {file./run/alice}
				throughput 1000000 per 1s
				max_packet_amount 5000
				ildcp {
					address_prefix g.child
					asset_code USD
					asset_scale 2
				}
			}
			peer bob {
				jwt_secret s3cret
				client_cert AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99
			}
		}`, want: &Edge{
			Address: "g.edge", MaxPacketSize: 32768, MinExpiryWindow: caddy.Duration(500 * time.Millisecond),
			MaxHold:           caddy.Duration(20 * time.Second),
			DestinationHeader: "verify", PeerHeader: "X-Peer", JWTLeeway: &leeway, JWTAllowMissingExp: true,
			ForwardHeaders: []string{"traceparent", "tracestate", "X-Request-Id"},
			Limits:         &Limits{MaxPacketAmount: math.MaxUint64, Rate: &Budget{Limit: 10000, Period: caddy.Duration(time.Minute), Burst: 500}},
			Redis: &store.Config{Address: "127.0.0.1:6379", Username: "edge", Password: "{env.REDIS_PASSWORD}", DB: 2, KeyPrefix: "limits:",
				Timeout: caddy.Duration(20 * time.Millisecond), OnStoreFailure: "deny", Instances: 3},
			Peers: []*Peer{
				{Name: "alice", Tokens: []string{"{env.ALICE}", "second"}, UpstreamToken: "{file./run/alice}",
					Limits: &Limits{MaxPacketAmount: 5000, Throughput: &Budget{Limit: 1000000, Period: caddy.Duration(time.Second)}},
					ILDCP:  &ILDCP{AddressPrefix: "g.child", AssetCode: "USD", AssetScale: 2}},
				{Name: "bob", JWTSecrets: []string{"s3cret"}, ClientCerts: []string{"AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"}},
			},
		}},
		{name: "metrics off", input: "ilp_edge {\naddress test.e\nmetrics off\npeer a {\ntoken t\n}\n}", want: &Edge{
			Address: "test.e", DisableMetrics: true, Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}},
		{name: "metrics twice the argument", input: "ilp_edge {\naddress g.e\nmetrics off on\n}", err: "wrong argument count"},
		{name: "minimal", input: "ilp_edge {\naddress test.e\npeer a {\ntoken t\n}\n}", want: &Edge{
			Address: "test.e", Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}},
		{name: "inline arg", input: "ilp_edge g.x {\n}", err: "wrong argument count"},
		{name: "address from an unset variable", input: "ilp_edge {\naddress {$ILP_TEST_UNSET_ADDRESS}\n}", err: "is the variable set?"},
		{name: "no address", input: "ilp_edge {\npeer a {\ntoken t\n}\n}", err: "needs an address"},
		{name: "unknown option", input: "ilp_edge {\naddress g.e\nfrobnicate\n}", err: `unrecognized ilp_edge option "frobnicate"`},
		{name: "bad size", input: "ilp_edge {\naddress g.e\nmax_packet_size lots\n}", err: "not a size"},
		{name: "bad duration", input: "ilp_edge {\naddress g.e\nmin_expiry_window soon\n}", err: "min_expiry_window"},
		{name: "bad mode", input: "ilp_edge {\naddress g.e\ndestination_header sometimes\n}", err: "want trust, verify or ignore"},
		{name: "forward_headers without names", input: "ilp_edge {\naddress g.e\nforward_headers\n}", err: "wrong argument count"},
		{name: "forward_headers hop-by-hop", input: "ilp_edge {\naddress g.e\nforward_headers Keep-Alive\n}", err: "Keep-Alive may not be forwarded"},
		{name: "forward_headers idempotency key", input: "ilp_edge {\naddress g.e\nforward_headers idempotency-key\n}", err: "may not be forwarded"},
		{name: "forward_headers not a name", input: "ilp_edge {\naddress g.e\nforward_headers x:y\n}", err: "not a header name"},
		{name: "redis without address", input: "ilp_edge {\naddress g.e\nredis {\n}\n}", err: "redis takes an address"},
		{name: "redis bad failure mode", input: "ilp_edge {\naddress g.e\nredis r:1 {\non_store_failure maybe\n}\n}", err: "want allow or deny"},
		{name: "redis instances 0", input: "ilp_edge {\naddress g.e\nredis r:1 {\ninstances 0\n}\n}", err: "above 0"},
		{name: "redis bad timeout", input: "ilp_edge {\naddress g.e\nredis r:1 {\ntimeout -1s\n}\n}", err: "redis: timeout"},
		{name: "redis bad db", input: "ilp_edge {\naddress g.e\nredis r:1 {\ndb x\n}\n}", err: "redis: db"},
		{name: "redis unknown option", input: "ilp_edge {\naddress g.e\nredis r:1 {\nsentinels yes\n}\n}", err: `unrecognized redis option "sentinels"`},
		{name: "rate without per", input: "ilp_edge {\naddress g.e\nrate 10 every 1s\n}", err: "rate takes <limit> per <duration>"},
		{name: "rate of 0", input: "ilp_edge {\naddress g.e\nrate 0 per 1s\n}", err: "not a whole number above 0"},
		{name: "throughput over a day", input: "ilp_edge {\naddress g.e\nthroughput 5 per 48h\n}", err: "at most 24h"},
		{name: "peer's bad burst", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\nrate 5 per 1s burst lots\n}\n}", err: `peer "a": `},
		{name: "max_packet_amount over uint64", input: "ilp_edge {\naddress g.e\nmax_packet_amount 18446744073709551616\n}", err: "not a whole number"},
		{name: "ildcp without asset", input: "ilp_edge {\naddress g.e\nildcp {\naddress_prefix g.e\n}\n}", err: "needs address_prefix and asset_code"},
		{name: "ildcp scale too big", input: "ilp_edge {\naddress g.e\nildcp {\nasset_scale 256\n}\n}", err: "0 to 255"},
		{name: "ildcp unknown option", input: "ilp_edge {\naddress g.e\nildcp {\ncurrency x\n}\n}", err: `unrecognized ildcp option "currency"`},
		{name: "peer without name", input: "ilp_edge {\naddress g.e\npeer {\ntoken t\n}\n}", err: "peer needs a name"},
		{name: "peer without secret", input: "ilp_edge {\naddress g.e\npeer a {\n}\n}", err: `peer "a" needs a token`},
		{name: "peer twice", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\n}\npeer a {\ntoken u\n}\n}", err: `peer "a" defined twice`},
		{name: "token without value", input: "ilp_edge {\naddress g.e\npeer a {\ntoken\n}\n}", err: "token takes exactly one argument"},
		{name: "bad fingerprint", input: "ilp_edge {\naddress g.e\npeer a {\nclient_cert zz\n}\n}", err: "fingerprint"},
		{name: "unknown peer option", input: "ilp_edge {\naddress g.e\npeer a {\npassword x\n}\n}", err: `unrecognized option "password"`},
		{name: "async peer with callback_tls", input: `ilp_edge {
			address g.e
			peer bob {
				token t
				mode async
				callback_url https://bob.example/ilp/callback
				callback_token c
				callback_tls {
					cert_file /etc/edge.crt
					key_file /etc/edge.key
					ca_file /etc/bob-ca.crt
					server_name bob.example
				}
			}
		}`, want: &Edge{Address: "g.e", Peers: []*Peer{{Name: "bob", Tokens: []string{"t"}, Mode: ModeAsync,
			CallbackPolicy: async.CallbackPolicy{URL: "https://bob.example/ilp/callback"}, CallbackToken: "c",
			CallbackTLS: &tlsclient.Config{CertFile: "/etc/edge.crt", KeyFile: "/etc/edge.key", CAFile: "/etc/bob-ca.crt", ServerName: "bob.example"}}}}},
		{name: "callback_tls twice", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\ncallback_tls {\n}\ncallback_tls {\n}\n}\n}", err: `peer "a": callback_tls given twice`},
		{name: "callback_tls with an argument", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\ncallback_tls /etc/edge.crt\n}\n}", err: `peer "a": callback_tls takes a block`},
		{name: "callback_tls unknown option", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\ncallback_tls {\nverify off\n}\n}\n}", err: `peer "a": callback_tls: unrecognized option "verify"`},
		{name: "callback_tls cert without key", input: "ilp_edge {\naddress g.e\npeer a {\ntoken t\ncallback_tls {\ncert_file c\n}\n}\n}", err: `peer "a": callback_tls: cert_file and key_file go together`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := new(Edge)
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not point at the Caddyfile line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}
