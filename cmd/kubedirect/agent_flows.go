package main

import (
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/flows"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/spf13/cobra"
)

// newAgentFlowsCommand is `kubedirect agent flows`, run in the agent pod by `kubedirect monitor`.
func newAgentFlowsCommand() *cobra.Command {
	var req flows.Request
	var cfgPath string
	cmd := &cobra.Command{
		Use:    "flows",
		Hidden: true,
		Short:  "Print this node's flows as JSON lines (kubedirect monitor runs it in the agent pod)",
		Long: `flows asks the agent on this node (over its flow socket) for the flows it kept from the last
--since, then with --follow every new one, and prints them as JSON lines (dataplane/flows.Record). It exits
when the agent has sent everything asked for, or when standard input closes (the CLI went away).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dataDir := config.DefaultCNIDataDir
			if cfg, err := config.Load(cfgPath); err == nil {
				dataDir = cfg.CNIDataDir
			}
			ctx, cancel := agentexec.UntilStdinCloses(cmd.Context(), cmd.InOrStdin())
			defer cancel()
			return flows.Stream(ctx, flows.SocketPath(dataDir), req, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "agent configuration file (its cniDataDir holds the flow socket)")
	cmd.Flags().DurationVar(&req.Since, "since", 0, "print the kept flows of this last period first")
	cmd.Flags().BoolVar(&req.Follow, "follow", false, "then print every new flow until standard input closes")
	cmd.Flags().Uint32Var(&req.Sample, "sample", 0, "raise the event rate to one in N new flows for this session (0: the agent's default)")
	cmd.Flags().DurationVar(&req.For, "for", 0, "how long --sample lasts at most (default 10m, at most 1h); it also ends when a --follow session does")
	return cmd
}
