package ilpcmd

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func sendCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "send <url> (--token <t> | --jwt-secret <s>) [--destination <address>] [--amount <n>] [--expiry <duration>] [--condition <hex>] [--data <text>] [--h2c] " +
			"[--async [--callback-listen <host:port>] [--callback-url <url>] [--callback-token <t>]]",
		Short: "Send one Prepare as ilp-plugin-http does and print the answer",
		Long: `
Builds a Prepare, POSTs it to the URL as ilp-plugin-http would (a Bearer
token, or an HS256 JWT signed with the shared secret, claims iat and exp
only), and prints the answer as 'caddy ilp decode' does, with the time it
took and, for a Fulfill, whether its fulfillment matches the condition.
Without --condition the condition is random, so only a connector that
fulfils anything can fulfil it. Exits 0 on a Fulfill, 1 on a Reject, an
HTTP error or no answer.

With --async the Prepare is sent as RFC 35 draft 3 has it: the command
first listens for the callback on --callback-listen (default
127.0.0.1:0, a free port), then POSTs the Prepare with a fresh Request-Id
(a version 4 UUID) and a Callback-Url, and wants 202 Accepted (any other
status is an error, as above). The Callback-Url is --callback-url, or
without it http://<the listener's address>/callback/<request-id>; behind
NAT, give the URL the edge reaches the listener at. It then waits until
the Prepare expires (--expiry) for the Fulfill or Reject, POSTed to the
listener with the same Request-Id, answers it 200, and prints it as
above, with the time after the 202 at which it came (by_callback_after_202;
elapsed is from sending the Prepare). A POST with another Request-Id gets
400; with --callback-token (the edge's callback_token for the peer), a
POST without Authorization: Bearer <that token> gets 401; neither is
taken. Exits 0 on a Fulfill, 1 on a Reject, a status other than 202, or
no reply by the expiry.`,
		Args: cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	token := f.String("token", "", "static token, sent as Authorization: Bearer <token>")
	jwtSecret := f.String("jwt-secret", "", "shared secret to sign an HS256 JWT with, as ilp-plugin-http's jwtSecret")
	dest := f.String("destination", "test.caddy-ilp.send", "the Prepare's destination ILP address")
	amount := f.Uint64("amount", 1, "the Prepare's amount")
	expiry := f.Duration("expiry", 30*time.Second, "time until the Prepare expires")
	condition := f.String("condition", "", "execution condition, 64 hex digits (default: random)")
	data := f.String("data", "", "the Prepare's data, as text")
	h2c := f.Bool("h2c", false, "HTTP/2 without TLS (prior knowledge), as ilp-plugin-http's http2 client speaks to plain URLs")
	var ao asyncOptions
	async := f.Bool("async", false, "send as RFC 35 draft 3: expect 202 and take the reply on a callback listener")
	f.StringVar(&ao.listen, "callback-listen", "127.0.0.1:0", "with --async, the host:port the callback listener listens on")
	f.StringVar(&ao.url, "callback-url", "", "with --async, the Callback-Url sent (default: http://<listener's address>/callback/<request-id>)")
	f.StringVar(&ao.token, "callback-token", "", "with --async, the token the edge must send as Authorization: Bearer <token> (default: any)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		auth, err := authorization(*token, *jwtSecret)
		if err != nil {
			return err
		}
		if !ilpdest.ValidAddress(*dest) {
			return fmt.Errorf("--destination %q is not a valid ILP address", *dest)
		}
		if !*async {
			for _, name := range []string{"callback-listen", "callback-url", "callback-token"} {
				if f.Changed(name) {
					return fmt.Errorf("--%s is for --async", name)
				}
			}
		}
		cond := make([]byte, 32)
		if *condition == "" {
			rand.Read(cond)
		} else if cond, err = hex.DecodeString(*condition); err != nil || len(cond) != 32 {
			return fmt.Errorf("--condition: want 64 hex digits")
		}
		expiresAt := time.Now().Add(*expiry)
		prepare := ilpdest.AppendPrepare(nil, ilpdest.Prepare{Amount: *amount, ExpiresAt: expiresAt,
			ExecutionCondition: cond, Destination: []byte(*dest), Data: []byte(*data)})
		req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, args[0], bytes.NewReader(prepare))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("ILP-Destination", *dest)
		client := &http.Client{Timeout: *expiry + 5*time.Second}
		if *h2c {
			t := &http.Transport{Protocols: new(http.Protocols)}
			t.Protocols.SetUnencryptedHTTP2(true)
			client.Transport = t
		}
		if *async {
			return sendAsync(cmd, client, req, cond, expiresAt, ao)
		}
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		elapsed := time.Since(start)
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return httpError(res.StatusCode, elapsed, body)
		}
		v, err := decodePacket(body)
		if err != nil {
			return fmt.Errorf("the answer is not an ILP packet: %w", err)
		}
		return printAnswer(cmd.OutOrStdout(), v, cond, sendResult{Elapsed: elapsed.Round(time.Microsecond).String()})
	}
	return cmd
}

// sendResult is what `caddy ilp send` prints.
type sendResult struct {
	Answer  any    `json:"answer"`
	Elapsed string `json:"elapsed"`
	// ByCallbackAfter202 is set with --async: the reply came by callback,
	// this long after the 202.
	ByCallbackAfter202 string `json:"by_callback_after_202,omitempty"`
	ConditionMet       *bool  `json:"condition_met,omitempty"`
}

// httpError is the error for an HTTP answer other than the one wanted.
func httpError(status int, elapsed time.Duration, body []byte) error {
	return fmt.Errorf("HTTP %d after %v: %s", status, elapsed.Round(time.Microsecond), bytes.TrimSpace(body))
}

// printAnswer prints result with the decoded answer v and, for a
// Fulfill, whether it matches cond; a Reject is the error returned.
func printAnswer(w io.Writer, v any, cond []byte, result sendResult) error {
	result.Answer = v
	if f, ok := v.(decodedFulfill); ok {
		sum := sha256.Sum256(f.Fulfillment)
		matches := bytes.Equal(sum[:], cond)
		result.ConditionMet = &matches
	}
	out := json.NewEncoder(w)
	out.SetIndent("", "  ")
	if err := out.Encode(result); err != nil {
		return err
	}
	if r, ok := v.(decodedReject); ok {
		return fmt.Errorf("rejected: %s from %s: %s", r.Code, r.TriggeredBy, r.Message)
	}
	return nil
}

// authorization is the Authorization header ilp-plugin-http sends: the
// token, or a fresh HS256 JWT with iat and exp (one minute) signed with
// the secret.
func authorization(token, jwtSecret string) (string, error) {
	switch {
	case token != "" && jwtSecret != "":
		return "", errors.New("give --token or --jwt-secret, not both")
	case token != "":
		return "Bearer " + token, nil
	case jwtSecret != "":
		now := time.Now().Unix()
		enc := base64.RawURLEncoding
		signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
			enc.EncodeToString(fmt.Appendf(nil, `{"iat":%d,"exp":%d}`, now, now+60))
		mac := hmac.New(sha256.New, []byte(jwtSecret))
		mac.Write([]byte(signed))
		return "Bearer " + signed + "." + enc.EncodeToString(mac.Sum(nil)), nil
	}
	return "", errors.New("give --token or --jwt-secret")
}
