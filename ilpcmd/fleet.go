package ilpcmd

import (
	"errors"

	"github.com/spf13/cobra"
)

func fleetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet --admin <host:port>",
		Short: "Show what the edges share: the edges alive, each peer's routing table and route control",
		Long: `
Asks the running edge (its admin endpoint's /ilp/fleet) and prints, as JSON:
the edge instances alive on each shared store (redis) and how many the
limits are divided among while Redis is away; and, for each peer whose
route updates the edge fans out, its routing table as the edges share it
(or as this edge holds it, without a store): its id and epoch, whether it
can be replayed whole, the connector that holds the peer's route control,
and the epoch each connector is known to hold.`,
		Args: cobra.NoArgs,
	}
	admin := cmd.Flags().String("admin", "", "the running edge's admin endpoint, e.g. localhost:2019")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *admin == "" {
			return errors.New("--admin is required: the fleet is known only to a running edge")
		}
		return printAdmin(cmd.OutOrStdout(), *admin, "/ilp/fleet")
	}
	return cmd
}
