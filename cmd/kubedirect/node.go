package main

import (
	"context"
	"os/exec"
	"runtime"

	awsprov "github.com/kubedirect/kubedirect/provision/aws"
	"github.com/spf13/cobra"
)

// newNodeCommand is the node side of the AWS provider (as kOps' nodeup): user-data runs
// `node bootstrap`; systemd timers it installs run `node sync-image` and, on the control plane,
// `node renew-token` and `node etcd-snapshot`; an operator runs `node etcd-restore`.
func newNodeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Run on an AWS node: bootstrap it and keep kubedirect current", Hidden: true}
	var path string
	node := func(ctx context.Context) (*awsprov.Node, *awsprov.NodeConfig, error) {
		c, err := awsprov.LoadNodeConfig(path)
		if err != nil {
			return nil, nil, err
		}
		arch := c.Arch
		if arch == "" {
			arch = runtime.GOARCH
		}
		n, err := awsprov.NewNode(ctx, c.Cluster, c.StateStore, c.Region, arch, "", awsprov.KubeletKubeconfig, g.logger())
		return n, c, err
	}
	// verb adds a subcommand that runs f with the node of the configuration --config names.
	verb := func(use, short string, f func(ctx context.Context, n *awsprov.Node, c *awsprov.NodeConfig) error) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			n, c, err := node(cmd.Context())
			if err != nil {
				return err
			}
			return f(cmd.Context(), n, c)
		}}
		c.Flags().StringVar(&path, "config", awsprov.NodeConfigPath, "the node's bootstrap configuration")
		cmd.AddCommand(c)
		return c
	}
	verb("bootstrap", "Join this instance to its cluster (kubeadm init on the first control plane, join elsewhere)",
		func(ctx context.Context, n *awsprov.Node, c *awsprov.NodeConfig) error {
			return n.Bootstrap(ctx, c, awsprov.RunLogged(g.stdout))
		})
	verb("sync-image", "Install the kubedirect binary in the state store and import its image into containerd",
		func(ctx context.Context, n *awsprov.Node, _ *awsprov.NodeConfig) error {
			id, err := awsprov.Whoami(ctx)
			if err != nil {
				return err
			}
			n.NodeName, n.PublicIP = id.Hostname, id.PublicIP
			_, err = n.SyncImage(ctx)
			return err
		})
	verb("renew-token", "Replace the join token in the state store with a new one (control plane)",
		func(ctx context.Context, n *awsprov.Node, _ *awsprov.NodeConfig) error {
			return n.RenewToken(ctx, func(ctx context.Context, name string, args ...string) ([]byte, error) {
				return exec.CommandContext(ctx, name, args...).Output()
			})
		})
	verb("etcd-snapshot", "Save an etcd snapshot in the state store if this control plane's member leads; prune old ones",
		func(ctx context.Context, n *awsprov.Node, _ *awsprov.NodeConfig) error {
			_, err := n.SnapshotLocalEtcd(ctx)
			return err
		})
	var from string
	restore := verb("etcd-restore", "Replace this control plane's etcd data with a snapshot from the state store (a one-member cluster)",
		func(ctx context.Context, n *awsprov.Node, _ *awsprov.NodeConfig) error {
			id, err := awsprov.Whoami(ctx)
			if err != nil {
				return err
			}
			_, err = n.RestoreLocalEtcd(ctx, from, id)
			return err
		})
	restore.Flags().StringVar(&from, "snapshot", "latest", "the snapshot, as its state-store path relative to the cluster (backups/etcd/...db), or latest")
	return cmd
}
