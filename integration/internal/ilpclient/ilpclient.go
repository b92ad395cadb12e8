// Package ilpclient sends ILP-over-HTTP requests for the benchmark harness
// and the demo the way ilp-plugin-http clients do.
package ilpclient

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// H2C returns a client that speaks HTTP/2 with prior knowledge to
// http:// URLs, as ilp-plugin-http's HTTP/2 client does.
func H2C(timeout time.Duration) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Protocols: &p}}
}

// Post sends one packet with headers ("Name: value") and returns the body
// of the 200 answer; any other status is an error.
func Post(c *http.Client, url string, body []byte, headers []string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %q", resp.Status, reply)
	}
	return reply, nil
}
