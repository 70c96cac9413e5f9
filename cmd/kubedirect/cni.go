package main

import (
	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/spf13/cobra"
)

func newCNICommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "Run as the CNI plugin (CNI_COMMAND and the network config on stdin), or install it",
		Long: `Without a subcommand, cni is the CNI plugin: it reads CNI_COMMAND (ADD, DEL, CHECK, VERSION), the
other CNI_* variables and the network configuration on stdin, as the CNI specification says.`,
		Args: cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			cni.Main()
		},
	}
	cmd.AddCommand(newCNIInstallCommand(g))
	return cmd
}

func newCNIInstallCommand(g *globals) *cobra.Command {
	var o cni.InstallOptions
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Copy this binary into the CNI bin dir as the kubedirect plugin and write its conflist",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := cni.Install(o); err != nil {
				return err
			}
			g.logger().Info("installed CNI plugin", "binDir", o.BinDir, "confDir", o.ConfDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.BinDir, "bin-dir", "/opt/cni/bin", "CNI plugin directory")
	cmd.Flags().StringVar(&o.ConfDir, "conf-dir", "/etc/cni/net.d", "CNI network config directory")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "plugin data dir (IPAM, node state); default "+cni.DefaultDataDir)
	cmd.Flags().IntVar(&o.MTU, "mtu", 0, "pod MTU (default: underlay MTU - 50)")
	return cmd
}
