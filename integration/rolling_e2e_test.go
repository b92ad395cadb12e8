package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestRollingRestarts sends a steady stream of Prepares through each
// front door, configured as Caddyfile.example is (passive health that
// skips a failed connector for 10 s, active health every 5 s), while one
// of three connectors is SIGKILLed every 3 s and back 300 ms later. By the
// third kill every connector has failed within fail_duration, so passive
// health has marked all three down although all are up: the forwarder
// must try them anyway, in rank order, rather than reject everything. At
// most 1% of the packets may get anything but a Fulfill.
func TestRollingRestarts(t *testing.T) {
	fleet := startStubFleet(t, 3)
	const health = "fail_duration 10s\n max_fails 1\n health_uri /health\n health_interval 5s"
	startInProcess(t, bothDoors(9080, hostileToken, fleet.upstreams, "lb_retries 2\n "+health, health))

	const perDoor = 2400 // 12 s at 200 packets/s: 3 kills
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		stop := make(chan struct{})
		killed := fleet.killEvery(3*time.Second, 300*time.Millisecond, stop)
		results := sendSteadily(t, perDoor, "http://127.0.0.1:9080/"+door, func(i int) string {
			return fmt.Sprintf("g.roll.r%d.%s-%d", i%30, door, i)
		})
		close(stop)
		kills := <-killed
		counts := map[string]int{}
		for _, o := range results {
			counts[o.answer]++
		}
		t.Logf("%s: %d connector kills during %d packets: %v", door, kills, perDoor, counts)
		if kills < len(fleet.ports) {
			t.Errorf("%s: only %d kills happened; every connector must be killed once", door, kills)
		}
		if failed := perDoor - counts["fulfill"]; failed*100 > perDoor {
			t.Errorf("%s: %d of %d packets not fulfilled, want at most 1%%: %v", door, failed, perDoor, counts)
		}
	}
}
