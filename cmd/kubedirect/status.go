package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/provision/observe"
	"github.com/spf13/cobra"
)

func newStatusCommand(g *globals) *cobra.Command {
	v := &viewFlags{}
	cmd := &cobra.Command{
		Use:   "status [--name NAME | -f FILE | --kubeconfig FILE] [--node NODE]... [-o table|json]",
		Short: "Show every node's agent and datapath: readiness, attach mode, map fill, sync, drops",
		Long: `status reads each node's datapath through the Kubernetes API (it runs "kubedirect agent dump" in
the node's agent pod) and prints one line per node: agent version and readiness, where the programs are
attached and how (tcx or clsact), map fill against capacity, Services programmed and skipped, the last
sync and sync errors, and packets dropped since start by reason. Problems follow the table.

Exit status: 0 when every node is healthy, 2 when one is not (agent not ready, Service skipped, map
nearly full, node unreachable), 1 when status could not run.`,
		Example: `  kubedirect status --name demo
  kubedirect status --node demo-worker -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ac, name, err := v.connect(cmd, g)
			if err != nil {
				return err
			}
			s, err := observe.Read(cmd.Context(), ac, v.nodes...)
			if err != nil {
				return fmt.Errorf("status of %q: %w", name, err)
			}
			rows := inspect.StatusRows(s.Dumps, s.NodeErrors)
			if v.output == "json" {
				err = json.NewEncoder(g.stdout).Encode(rows)
			} else {
				err = inspect.WriteStatus(g.stdout, rows, time.Now())
			}
			if err != nil {
				return err
			}
			if !inspect.Healthy(rows) {
				return &exitError{code: 2, err: fmt.Errorf("status of %q: %w", name, errors.New("a node is unhealthy"))}
			}
			return nil
		},
	}
	v.addFlags(cmd, g)
	return cmd
}
