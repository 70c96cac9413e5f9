package main

import (
	"encoding/json"
	"fmt"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/dataplane/trace"
	"github.com/spf13/cobra"
)

// newAgentTraceCommand is the in-pod side of `kubedirect trace`: it runs in the agent's container (the
// node's network namespace, the node's pinned maps) and prints the trace.Result as JSON.
func newAgentTraceCommand() *cobra.Command {
	var cfgPath, from, to, iface string
	cmd := &cobra.Command{
		Use:    "trace --from IP:PORT --to IP:PORT/tcp|udp [--iface netdev|pod]",
		Short:  "Run this node's datapath programs on one synthesized packet, on copies of its maps (JSON)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := trace.ParseRequest(from, to, iface)
			if err != nil {
				return err
			}
			cfg, err := agentConfig(cmd, cfgPath)
			if err != nil {
				return err
			}
			live, err := maps.Open(cfg.BPFFSPath)
			if err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			defer live.Close()
			res, err := trace.Run(live, req)
			if err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "agent configuration file (its bpffsPath)")
	cmd.Flags().StringVar(&from, "from", "", "source IP:PORT of the packet")
	cmd.Flags().StringVar(&to, "to", "", "destination IP:PORT/tcp|udp of the packet")
	cmd.Flags().StringVar(&iface, "iface", string(trace.Netdev), "where the packet enters: netdev (the node's NIC) or pod (a local pod's veth; --from is the pod)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
