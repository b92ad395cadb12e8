package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestILDCPAtTheEdge: a real ILDCP child (ilp-protocol-ildcp's fetch over
// ilp-plugin-http, integration/js/ildcp.js) gets its address from the
// edge while its only connector is down, through both front doors.
func TestILDCPAtTheEdge(t *testing.T) {
	needNode(t)
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			ildcp {
				address_prefix g.parent
				asset_code XRP
				asset_scale 9
			}
			peer alice {
				token %s
			}
		}
		handle /reverse_proxy {
			reverse_proxy %[2]s {
				lb_policy ilp_prefix
			}
		}
		handle /ilp_proxy {
			ilp_proxy %[2]s
		}
	}`, hostileToken, ilptest.DeadAddress(t)))
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		out, err := exec.Command("node", "js/ildcp.js", "--url", "http://127.0.0.1:9080/"+door, "--token", hostileToken).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", door, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "ADDRESS g.parent.alice 9 XRP" {
			t.Errorf("%s: %s, want ADDRESS g.parent.alice 9 XRP", door, got)
		}
	}
}
