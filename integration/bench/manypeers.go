package main

import (
	"fmt"
	"net/http"
	"syscall"
)

// manyPeers is the peers of the 79-peers row, each on one kept HTTP/1.1
// connection of its own.
const manyPeers = 1000

// manyPeersWorkload is many small peers: manyPeers keep-alive HTTP/1.1
// connections, each sending now and then, rate packets/s in all (each
// peer one every manyPeers/rate seconds, in turns). What a proxy pays
// here that 32 busy connections hide is per connection: its memory (the
// report's peak RSS), and a wake-up and a read for every packet, as no
// connection has a second request waiting.
func manyPeersWorkload(id string, body []byte, rate int) workload {
	return workload{id: id, body: body, goClient: true, conns: manyPeers, rate: rate,
		name: fmt.Sprintf("%d B Prepare, %d peers × 1 HTTP/1.1 connection, %d packets/s offered in all (Go client)",
			len(body), manyPeers, rate)}
}

// keptClients makes one HTTP client for each of l's connections, to be
// kept from the warm-up to the measured run (goLoad.clients).
func keptClients(l goLoad) []*http.Client {
	clients := make([]*http.Client, l.conns)
	for i := range clients {
		clients[i] = &http.Client{Transport: l.transport(), Timeout: goLoadTimeout}
	}
	return clients
}

func closeClients(clients []*http.Client) {
	for _, c := range clients {
		c.CloseIdleConnections()
	}
}

// usualFileLimit is the soft limit on open files most systems start a
// process with.
const usualFileLimit = 1024

// filesNeeded is the open files a process of the run may need at once:
// twice the most connections a workload holds (a proxy holds each
// peer's and, at worst, one upstream for each), and room for the rest.
func filesNeeded(wls []workload) uint64 {
	most := 0
	for _, wl := range wls {
		most = max(most, wl.conns)
	}
	return uint64(2*most + 256)
}

// ensureFileLimit makes sure that the harness (the client's end of every
// connection) and the proxies it starts from now on may open the files
// wls need. Go raised the harness' own soft limit to its hard limit at
// start, but starts children with the soft limit it found (often 1,024):
// setting the limit, unchanged, makes them inherit the raised one, so
// that nginx's workers and HAProxy can take a thousand peers. HAProxy's
// maxconn and nginx's worker_connections (4,096) are above that already.
func ensureFileLimit(wls []workload) error {
	need := filesNeeded(wls)
	if need <= usualFileLimit {
		return nil // as the other rows always ran
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < need {
		return fmt.Errorf("the workloads need %d open files, the limit is %d (hard %d): raise it (ulimit -n)", need, lim.Cur, lim.Max)
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
