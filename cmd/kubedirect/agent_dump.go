package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/spf13/cobra"
)

// agentConfig loads the agent's configuration as the agent does: the defaults when the default path is
// absent and --config was not given.
func agentConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) && !cmd.Flags().Changed("config") {
		cfg = &config.Config{}
		cfg.SetDefaults()
		return cfg, nil
	}
	return cfg, err
}

// newAgentDumpCommand is `kubedirect agent dump`, run in the agent pod by status, inspect and verify.
func newAgentDumpCommand(g *globals) *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:    "dump [-o json]",
		Short:  "Print this node's datapath (pinned maps, attachments, agent status) as one JSON document",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "json" {
				return fmt.Errorf("flag --output: unsupported value %q (want json)", output)
			}
			cfg, err := agentConfig(cmd, cfgPath)
			if err != nil {
				return err
			}
			d, err := inspect.Collect(cmd.Context(), cfg.BPFFSPath, inspect.StatusURL(cfg.HealthAddr), os.Getenv("NODE_NAME"))
			if err != nil {
				return fmt.Errorf("agent dump: %w", err)
			}
			d.Version = version
			return json.NewEncoder(g.stdout).Encode(d)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "agent configuration file")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json")
	return cmd
}

// newAgentDebugCommand holds commands that damage the datapath on purpose, for tests of verify.
func newAgentDebugCommand() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:    "debug",
		Short:  "Deliberately corrupt this node's maps (tests of kubedirect verify)",
		Hidden: true,
	}
	del := &cobra.Command{
		Use:   "delete-frontend ADDRESS:PORT/PROTO | nodeport:PORT/PROTO",
		Short: "Delete one frontend from the services map, behind the agent's back",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := agentConfig(cmd, cfgPath)
			if err != nil {
				return err
			}
			k, err := parseFrontendKey(args[0])
			if err != nil {
				return err
			}
			s, err := maps.Open(cfg.BPFFSPath)
			if err != nil {
				return err
			}
			defer s.Close()
			if _, err := s.LookupService(k); err != nil {
				return fmt.Errorf("frontend %s: %w", args[0], err)
			}
			return s.DeleteService(k)
		},
	}
	cmd.PersistentFlags().StringVar(&cfgPath, "config", config.DefaultPath, "agent configuration file")
	cmd.AddCommand(del)
	return cmd
}

// parseFrontendKey reads "10.96.0.10:53/UDP" (a cluster-scope frontend) or "nodeport:30080/TCP".
func parseFrontendKey(s string) (maps.ServiceKey, error) {
	hostPort, proto, ok := strings.Cut(s, "/")
	var p uint8
	switch strings.ToUpper(proto) {
	case "TCP":
		p = maps.ProtoTCP
	case "UDP":
		p = maps.ProtoUDP
	default:
		ok = false
	}
	if !ok {
		return maps.ServiceKey{}, fmt.Errorf("frontend %q: want ADDRESS:PORT/TCP|UDP or nodeport:PORT/TCP|UDP", s)
	}
	if rest, found := strings.CutPrefix(hostPort, "nodeport:"); found {
		ap, err := netip.ParseAddrPort("0.0.0.0:" + rest)
		if err != nil {
			return maps.ServiceKey{}, fmt.Errorf("frontend %q: %w", s, err)
		}
		return maps.NewServiceKey(netip.Addr{}, ap.Port(), p, maps.ScopeExternal), nil
	}
	ap, err := netip.ParseAddrPort(hostPort)
	if err != nil {
		return maps.ServiceKey{}, fmt.Errorf("frontend %q: %w", s, err)
	}
	return maps.NewServiceKey(ap.Addr(), ap.Port(), p, maps.ScopeCluster), nil
}
