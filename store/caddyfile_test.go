package store

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        *Config
		err         string
	}{
		{name: "one server", input: "redis 10.0.2.1:6379", want: &Config{Address: "10.0.2.1:6379"}},
		{name: "sentinel", input: `redis 10.0.2.1:26379 10.0.2.2:26379 {
			master_name caddy-ilp
			username edge
			password {env.REDIS_PASSWORD}
			sentinel_username watcher
			sentinel_password {env.SENTINEL_PASSWORD}
			db 2
			key_prefix fleet1:
			timeout 20ms
			on_store_failure deny
			instances 3
		}`, want: &Config{Addresses: []string{"10.0.2.1:26379", "10.0.2.2:26379"}, MasterName: "caddy-ilp",
			Username: "edge", Password: "{env.REDIS_PASSWORD}", SentinelUsername: "watcher", SentinelPassword: "{env.SENTINEL_PASSWORD}",
			DB: 2, KeyPrefix: "fleet1:", Timeout: caddy.Duration(20 * time.Millisecond), OnStoreFailure: "deny", Instances: 3}},
		{name: "cluster with tls", input: `redis 10.0.3.1:6379 {
			cluster
			tls {
				ca_file /etc/redis/ca.pem
				cert_file /etc/redis/edge.pem
				key_file /etc/redis/edge.key
				server_name redis.internal
			}
		}`, want: &Config{Address: "10.0.3.1:6379", Cluster: true, TLS: &TLS{CAFile: "/etc/redis/ca.pem",
			CertFile: "/etc/redis/edge.pem", KeyFile: "/etc/redis/edge.key", ServerName: "redis.internal"}}},
		{name: "no address", input: "redis {\n}", err: "redis takes an address"},
		{name: "cluster and sentinel", input: "redis a:1 b:1 {\nmaster_name m\ncluster\n}", err: "exclusive"},
		{name: "db on a cluster", input: "redis a:1 b:1 {\ndb 1\n}", err: "only db 0"},
		{name: "cert without key", input: "redis a:1 {\ntls {\ncert_file c\n}\n}", err: "go together"},
		{name: "unknown tls option", input: "redis a:1 {\ntls {\nverify off\n}\n}", err: `redis: tls: unrecognized option "verify"`},
		{name: "bad failure mode", input: "redis a:1 {\non_store_failure maybe\n}", err: "want allow or deny"},
		{name: "cluster with an argument", input: "redis a:1 {\ncluster yes\n}", err: "cluster takes no argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.input)
			d.Next()
			got, err := UnmarshalCaddyfile(d)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %v does not point at the Caddyfile line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestConfigTLS: the files are read when the store loads, and a missing
// one is an error then, naming it.
func TestConfigTLS(t *testing.T) {
	_, err := New(&Config{Address: "127.0.0.1:1", TLS: &TLS{CAFile: "/nonexistent/ca.pem"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("a missing CA file: %v", err)
	}
}
