package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/spf13/cobra"
)

func newLabCommand(g *globals) *cobra.Command {
	var name, runRoot string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A multi-node kubedirect test bed on this machine (network namespaces, real kube-apiserver)",
		Long: `lab builds nodes as network namespaces on a private underlay bridge, a real etcd and kube-apiserver
(built by hack/build-k8s.sh), one kubedirect agent per node, echo pods attached by the CNI plugin and an
outside client namespace. Needs root.`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", lab.DefaultName, "lab name (prefix of its namespaces, at most 8 characters)")
	cmd.PersistentFlags().StringVar(&runRoot, "run-root", lab.DefaultRunRoot, "directory holding the labs' state")

	var o lab.Options
	var subnet string
	var podsPerNode int
	up := &cobra.Command{
		Use:   "up",
		Short: "Build a lab and print its kubeconfig path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Name, o.RunRoot, o.Logger = name, runRoot, g.logger()
			p, err := netip.ParsePrefix(subnet)
			if err != nil {
				return fmt.Errorf("lab up: --subnet: %w", err)
			}
			o.Subnet = p
			if o.K8sBinDir == "" {
				o.K8sBinDir = defaultK8sBinDir()
			}
			start := time.Now()
			l, err := lab.Up(cmd.Context(), o)
			if err != nil {
				return fmt.Errorf("lab up: %w", err)
			}
			for _, n := range l.State.Nodes {
				for i := 1; i <= podsPerNode; i++ {
					if _, err := l.AddPod(cmd.Context(), n.Name, fmt.Sprintf("echo-%s-%d", n.Name, i)); err != nil {
						return fmt.Errorf("lab up: %w", err)
					}
				}
			}
			g.logger().Info("lab up", "name", name, "took", time.Since(start).Round(time.Millisecond))
			fmt.Fprintln(g.stdout, l.State.Kubeconfig)
			return nil
		},
	}
	up.Flags().IntVar(&o.Nodes, "nodes", lab.DefaultNodes, "number of nodes")
	up.Flags().StringVar(&subnet, "subnet", lab.DefaultSubnet.String(), "underlay /24 (private; only inside the lab's namespaces)")
	up.Flags().StringVar(&o.K8sBinDir, "k8s-bin-dir", "", "directory with etcd and kube-apiserver (default $KUBEDIRECT_K8S_BIN or the hack/build-k8s.sh cache)")
	up.Flags().StringVar(&o.ExternalServiceMode, "mode", "tunnel", "agents' default external service mode (tunnel or dsr)")
	up.Flags().IntVar(&podsPerNode, "pods-per-node", 1, "echo pods to start on every node")

	down := &cobra.Command{
		Use:   "down",
		Short: "Remove a lab: its processes, namespaces, bridge, pinned maps and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Open(runRoot, name)
			if err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			return l.Down(cmd.Context())
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show a lab's nodes, pods, processes and each agent's /status as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Open(runRoot, name)
			if err != nil {
				return fmt.Errorf("lab status: %w", err)
			}
			agents := map[string]any{}
			c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
			for _, n := range l.State.Nodes {
				resp, err := c.Get(l.AgentURL(n.Name) + "/status")
				if err != nil {
					agents[n.Name] = err.Error()
					continue
				}
				var st any
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				agents[n.Name] = st
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"lab": l.State, "agents": agents})
		},
	}
	cmd.AddCommand(up, down, status)
	return cmd
}

// defaultK8sBinDir is $KUBEDIRECT_K8S_BIN, else hack/build-k8s.sh's default cache for v1.34.4.
func defaultK8sBinDir() string {
	if d := os.Getenv("KUBEDIRECT_K8S_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kubedirect", "k8s", "v1.34.4", "bin")
}
