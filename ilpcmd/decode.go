package ilpcmd

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func decodeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "decode [<file>|-]",
		Short: "Decode an OER ILP packet (Prepare, Fulfill or Reject) to JSON",
		Long: `
Reads one packet from the file, or standard input without one or with "-",
as raw bytes or as hex text, and prints its fields as JSON. Binary fields
are hex; the Reject's message is text. A packet that does not parse is an
error naming what is wrong.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			raw, err := io.ReadAll(io.LimitReader(in, 1<<20))
			if err != nil {
				return err
			}
			v, err := decodePacket(raw)
			if err != nil {
				return err
			}
			out := json.NewEncoder(cmd.OutOrStdout())
			out.SetIndent("", "  ")
			return out.Encode(v)
		},
	}
}

// hexBytes marshals as a hex string.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

type decodedPrepare struct {
	Type               string    `json:"type"`
	Amount             uint64    `json:"amount,string"`
	ExpiresAt          time.Time `json:"expiresAt"`
	ExecutionCondition hexBytes  `json:"executionCondition"`
	Destination        string    `json:"destination"`
	Data               hexBytes  `json:"data"`
}

type decodedFulfill struct {
	Type        string   `json:"type"`
	Fulfillment hexBytes `json:"fulfillment"`
	Data        hexBytes `json:"data"`
}

type decodedReject struct {
	Type        string   `json:"type"`
	Code        string   `json:"code"`
	TriggeredBy string   `json:"triggeredBy"`
	Message     string   `json:"message"`
	Data        hexBytes `json:"data"`
}

// decodePacket reads raw (the packet's bytes, or hex text of them).
func decodePacket(raw []byte) (any, error) {
	if text := bytes.TrimSpace(raw); len(text) > 0 && len(text)%2 == 0 {
		if b, err := hex.DecodeString(string(text)); err == nil {
			raw = b
		}
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("no packet: the input is empty")
	}
	switch ilpdest.Type(raw[0]) {
	case ilpdest.TypePrepare:
		p, err := ilpdest.ReadPrepare(raw)
		if err != nil {
			return nil, err
		}
		return decodedPrepare{"prepare", p.Amount, p.ExpiresAt, p.ExecutionCondition, string(p.Destination), p.Data}, nil
	case ilpdest.TypeFulfill:
		f, err := ilpdest.ReadFulfill(raw)
		if err != nil {
			return nil, err
		}
		return decodedFulfill{"fulfill", f.Fulfillment, f.Data}, nil
	case ilpdest.TypeReject:
		r, err := ilpdest.ReadReject(raw)
		if err != nil {
			return nil, err
		}
		return decodedReject{"reject", r.Code.String(), r.TriggeredBy, r.Message, r.Data}, nil
	}
	return nil, fmt.Errorf("not an ILP packet: type %d (want 12 Prepare, 13 Fulfill or 14 Reject)", raw[0])
}
