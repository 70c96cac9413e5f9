package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/provision/observe"
	"github.com/spf13/cobra"
)

// verifyInterval is the pause between comparisons while differences remain under --settle.
var verifyInterval = 2 * time.Second

func newVerifyCommand(g *globals) *cobra.Command {
	v := &viewFlags{}
	var settle time.Duration
	cmd := &cobra.Command{
		Use:   "verify [--name NAME | -f FILE | --kubeconfig FILE] [--node NODE]... [-o table|json]",
		Short: "Compare every node's BPF maps with the API server's Services, EndpointSlices and Nodes",
		Long: `verify computes, for every node, what its maps should hold from the API server's Services,
EndpointSlices and Nodes with the agent's own translation, reads what they do hold (through the agent
pod), and prints every difference: missing frontend, stale or missing backend, wrong tunnel peer,
orphaned entry. Agents take a moment to follow a change, so differences are re-checked for up to
--settle before they are reported.

Exit status: 0 when the maps match, 2 when there is a difference or a node could not be compared,
1 when verify could not run.`,
		Example: `  kubedirect verify --name demo
  kubedirect verify --name demo --node demo-worker -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ac, name, err := v.connect(cmd, g)
			if err != nil {
				return err
			}
			r, err := observe.Verify(cmd.Context(), ac, settle, verifyInterval, v.nodes...)
			if err != nil {
				return fmt.Errorf("verify %q: %w", name, err)
			}
			if v.output == "json" {
				err = json.NewEncoder(g.stdout).Encode(r)
			} else {
				err = writeVerify(g, r)
			}
			if err != nil {
				return err
			}
			if !r.Clean() {
				return &exitError{code: 2, err: fmt.Errorf("verify %q: %d differences, %d nodes not compared: %w",
					name, len(r.Differences), len(r.Errors), inspect.ErrDrift)}
			}
			return nil
		},
	}
	v.addFlags(cmd, g)
	cmd.Flags().DurationVar(&settle, "settle", 10*time.Second, "re-check differences for up to this long before reporting them")
	return cmd
}

func writeVerify(g *globals, r *observe.VerifyResult) error {
	for _, d := range r.Differences {
		if _, err := fmt.Fprintln(g.stdout, d); err != nil {
			return err
		}
	}
	for _, e := range r.Errors {
		if _, err := fmt.Fprintln(g.stdout, "not compared:", e); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(g.stdout, "%d nodes compared, %d differences\n", len(r.Nodes), len(r.Differences))
	return err
}
