package main

import (
	"fmt"

	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/spf13/cobra"
)

func newExportCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Export a cluster's settings"}
	var name, path string
	kubeconfig := &cobra.Command{
		Use:   "kubeconfig --name NAME",
		Short: "Merge a cluster's admin context into a kubeconfig file (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kind.NewProvider().ExportKubeconfig(cmd.Context(), name, path); err != nil {
				return err
			}
			g.printer().Println(fmt.Sprintf("Set kubectl context to %q", kind.ContextName(name)))
			return nil
		},
	}
	kubeconfig.Flags().StringVar(&name, "name", "", "cluster name")
	kubeconfig.Flags().StringVar(&path, "kubeconfig", "", "kubeconfig file to write (default $KUBECONFIG or ~/.kube/config)")
	_ = kubeconfig.MarkFlagRequired("name")
	cmd.AddCommand(kubeconfig)
	return cmd
}
