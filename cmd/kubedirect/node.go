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
// `node renew-token`.
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
	bootstrap := &cobra.Command{
		Use:   "bootstrap",
		Short: "Join this instance to its cluster (kubeadm init on the control plane, join elsewhere)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, c, err := node(cmd.Context())
			if err != nil {
				return err
			}
			return n.Bootstrap(cmd.Context(), c, awsprov.RunLogged(g.stdout))
		},
	}
	sync := &cobra.Command{
		Use:   "sync-image",
		Short: "Install the kubedirect binary in the state store and import its image into containerd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, _, err := node(cmd.Context())
			if err != nil {
				return err
			}
			id, err := awsprov.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			n.NodeName, n.PublicIP = id.Hostname, id.PublicIP
			_, err = n.SyncImage(cmd.Context())
			return err
		},
	}
	renew := &cobra.Command{
		Use:   "renew-token",
		Short: "Replace the join token in the state store with a new one (control plane)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, _, err := node(cmd.Context())
			if err != nil {
				return err
			}
			return n.RenewToken(cmd.Context(), func(ctx context.Context, name string, args ...string) ([]byte, error) {
				return exec.CommandContext(ctx, name, args...).Output()
			})
		},
	}
	for _, c := range []*cobra.Command{bootstrap, sync, renew} {
		c.Flags().StringVar(&path, "config", awsprov.NodeConfigPath, "the node's bootstrap configuration")
		cmd.AddCommand(c)
	}
	return cmd
}
