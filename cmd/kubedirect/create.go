package main

import (
	"context"
	"time"

	"github.com/kubedirect/kubedirect/provision/create"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/spf13/cobra"
)

type createOptions struct {
	file       string
	dryRun     bool
	retain     bool
	kubeconfig string
	wait       time.Duration // validate the cluster at the end, retrying for up to this long (0: no validation)
}

func newCreateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a resource"}
	o := &createOptions{}
	cluster := &cobra.Command{
		Use:   "cluster -f FILE",
		Short: "Create a cluster from a spec file",
		Example: `  kubedirect create cluster -f examples/kind.yaml
  kubedirect create cluster -f examples/kind.yaml --dry-run
  cat spec.yaml | kubedirect create cluster -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCreateCluster(cmd.Context(), g, o) },
	}
	f := cluster.Flags()
	f.StringVarP(&o.file, "file", "f", "", `cluster spec file ("-" reads standard input)`)
	f.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be created")
	f.BoolVar(&o.retain, "retain", false, "keep what a failed create made, for debugging")
	f.DurationVar(&o.wait, "wait", 0, "after creating, validate the cluster as 'validate cluster' does, retrying for up to this long")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file to merge the cluster's context into (default $KUBECONFIG or ~/.kube/config)")
	_ = cluster.MarkFlagRequired("file")
	cmd.AddCommand(cluster)
	return cmd
}

func runCreateCluster(ctx context.Context, g *globals, o *createOptions) error {
	c, err := spec.LoadFile(o.file, g.stdin)
	if err != nil {
		return err
	}
	p := g.printer()
	provider, err := g.provider(c, p)
	if err != nil {
		return err
	}
	if o.dryRun {
		return create.Plan(ctx, provider, c, g.stdout)
	}
	return create.Cluster(ctx, provider, c, create.Options{
		Retain: o.retain, KubeconfigPath: o.kubeconfig, Wait: o.wait,
		Printer: p, Log: g.logger(),
		Validate: func(ctx context.Context, c *spec.Cluster, wait time.Duration) error {
			return runValidate(ctx, g, c, wait, "table")
		},
	})
}
