package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/create"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/kubedirect/kubedirect/provision/validate"
	"github.com/spf13/cobra"
)

// validateRetryInterval is the pause between attempts under --wait.
var validateRetryInterval = 10 * time.Second

func newValidateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "validate", Short: "Check that a cluster works"}
	ref := &clusterRef{}
	var wait time.Duration
	var output string
	cluster := &cobra.Command{
		Use:   "cluster (--name NAME | -f FILE) [--wait DURATION] [-o table|json]",
		Short: "Check nodes and agents, and prove that NodePort backends see clients' real addresses",
		Long: `validate cluster checks that every node and kube-system pod is Ready, that kube-proxy is absent and
that the kubedirect agent is ready on every node with its BPF maps programmed. Then it proves the
dataplane: in a temporary namespace it runs an echo backend on every node and NodePort Services with
externalTrafficPolicy Cluster and Local (TCP and UDP), calls every node's NodePort from this machine for a
local and a remote backend, and compares the source address each backend saw with the one a
host-network echo (a path without NAT) saw. The namespace is removed afterwards, also on failure or
Ctrl-C.

Exit status: 0 when everything passed, 2 when a check failed, 1 when validation could not run.`,
		Example: `  kubedirect validate cluster --name demo
  kubedirect validate cluster -f examples/kind.yaml --wait 5m
  kubedirect validate cluster --name demo -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("flag --output: unsupported value %q (want table or json)", output)
			}
			return runValidateRef(cmd.Context(), g, ref, wait, output)
		},
	}
	ref.addFlags(cluster)
	cluster.Flags().DurationVar(&wait, "wait", 0, "retry until the cluster passes or this much time has passed (0: one attempt)")
	cluster.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(cluster)
	return cmd
}

// validationRunner runs a validation, with retries for up to wait.
type validationRunner interface {
	RunWithWait(ctx context.Context, wait, interval time.Duration, onRetry func(*validate.Report, error)) (*validate.Report, error)
}

// validatorFor connects to the cluster as its admin; tests replace it.
// c is a spec, or only a name (no provider), which is then looked up.
var validatorFor = func(ctx context.Context, g *globals, c *spec.Cluster) (validationRunner, error) {
	var p provision.Provider
	var err error
	if c.Spec.Provider == "" {
		p, c, err = g.find(ctx, c.Metadata.Name, nil)
	} else {
		p, err = g.provider(c, nil)
	}
	if err != nil {
		return nil, err
	}
	return create.Validator(ctx, p, c, g.logger())
}

// runValidateRef validates the cluster the reference names.
func runValidateRef(ctx context.Context, g *globals, ref *clusterRef, wait time.Duration, output string) error {
	var c *spec.Cluster
	if ref.file != "" {
		var err error
		if c, err = spec.LoadFile(ref.file, g.stdin); err != nil {
			return err
		}
	} else {
		// The spec is looked up by name only when the validation connects (tests replace that).
		c = &spec.Cluster{Metadata: spec.ObjectMeta{Name: ref.name}}
	}
	return runValidate(ctx, g, c, wait, output)
}

// runValidate validates the cluster, prints the report on standard output (progress goes to standard
// error) and turns a failed check into exit status 2.
func runValidate(ctx context.Context, g *globals, c *spec.Cluster, wait time.Duration, output string) error {
	name := c.Metadata.Name
	v, err := validatorFor(ctx, g, c)
	if err != nil {
		return err
	}
	log := g.logger()
	// Progress goes to standard error so that standard output is the report alone (-o json).
	p := progress.New(g.stderr, g.quiet)
	attempt := 1
	var rep *validate.Report
	_ = p.Step(fmt.Sprintf("Validating cluster %q (nodes, agents, source-IP proof)", name), func() error {
		rep, err = v.RunWithWait(ctx, wait, validateRetryInterval, func(r *validate.Report, err error) {
			if err != nil {
				log.Info("validation could not run; retrying", "cluster", name, "attempt", attempt, "err", err)
			} else {
				log.Info("validation failed; retrying", "cluster", name, "attempt", attempt, "failures", r.Failures())
			}
			attempt++
		})
		if err == nil && !rep.Passed {
			return errors.New("failed")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("validate cluster %q: %w", name, err)
	}
	if output == "json" {
		if werr := rep.WriteJSON(g.stdout); werr != nil {
			return werr
		}
	} else if werr := rep.WriteTable(g.stdout); werr != nil {
		return werr
	}
	if !rep.Passed {
		return &exitError{code: 2, err: fmt.Errorf("validate cluster %q: %d checks %w", name, rep.Failures(), create.ErrValidationFailed)}
	}
	return nil
}
