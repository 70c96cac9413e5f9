package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/masq"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func newAgentCommand(g *globals) *cobra.Command {
	var cfgPath, kubeconfig, nodeName string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: program the eBPF dataplane from Services, EndpointSlices and Nodes",
		Long: `agent runs on every node (hostNetwork; CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON). It loads and attaches the BPF programs, adopts
the maps pinned under the config's bpffsPath, and keeps them in sync with the API server. It serves
/healthz, /readyz, /metrics and /status on the config's healthAddr (default :9890).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := agentConfig(cmd, cfgPath)
			if err != nil {
				return err
			}
			if nodeName == "" {
				return errors.New("agent: --node-name or $NODE_NAME is required")
			}
			var rc *rest.Config
			if kubeconfig != "" {
				rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			} else {
				rc, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("agent: kubernetes client config: %w", err)
			}
			rc.UserAgent = "kubedirect-agent/" + nodeName
			// protobuf, as kube-proxy asks for it: the initial lists of 10,000 Services and their
			// EndpointSlices decode several times faster than JSON; JSON stays acceptable for any
			// type the API server cannot send as protobuf
			rc.ContentType = "application/vnd.kubernetes.protobuf"
			rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
			kc, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("agent: kubernetes client: %w", err)
			}
			a, err := agent.New(agent.Options{Config: cfg, NodeName: nodeName, Client: kc, Logger: agentLogger(g, cfg.LogLevel)})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "cleanup",
		Short: "Remove the node state the agent installs outside its BPF pins (the pod egress masquerade table)",
		Long: `cleanup runs on a node being uninstalled, in the node's network namespace. The agent keeps its
nftables table (ip kubedirect) when it stops, so pods keep reaching the outside across agent restarts;
this removes it. A missing table is not an error.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return masq.Remove() },
	})
	cmd.AddCommand(newAgentDumpCommand(g), newAgentDebugCommand())
	cmd.AddCommand(newAgentFlowsCommand())
	cmd.AddCommand(newAgentTraceCommand())
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "agent configuration file (defaults apply when the default path is absent)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster service account)")
	cmd.Flags().StringVar(&nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	return cmd
}

// agentLogger honours the config's logLevel unless -v or -q was given.
func agentLogger(g *globals, level string) *slog.Logger {
	if g.verbose || g.quiet {
		return g.logger()
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: l}))
}
