package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/kubedirect/kubedirect/provision/spec"
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
			if err := setLabOptions(&o, g, "up", name, runRoot, subnet, o.K8sBinDir); err != nil {
				return err
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
	up.Flags().StringVar(&o.ExternalServiceMode, "mode", string(spec.DefaultExternalServiceMode), "agents' default external service mode (tunnel or dsr)")
	up.Flags().IntVar(&podsPerNode, "pods-per-node", 1, "echo pods to start on every node")

	// withLab is a subcommand that runs fn on the lab --name names.
	withLab := func(use, short string, fn func(*cobra.Command, *lab.Lab) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				l, err := lab.Open(runRoot, name)
				if err != nil {
					return fmt.Errorf("lab %s: %w", use, err)
				}
				return fn(cmd, l)
			}}
	}
	down := withLab("down", "Remove a lab: its processes, namespaces, bridge, pinned maps and state",
		func(cmd *cobra.Command, l *lab.Lab) error { return l.Down(cmd.Context()) })
	status := withLab("status", "Show a lab's nodes, pods, processes and each agent's /status as JSON",
		func(_ *cobra.Command, l *lab.Lab) error {
			agents := map[string]any{}
			c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
			for _, n := range l.State.Nodes {
				resp, err := c.Get(l.AgentURL(n.Name) + agentstatus.Path)
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
		})
	cmd.AddCommand(up, down, status, newLabBenchCommand(g, &name, &runRoot), newLabScaleCommand(g, &name, &runRoot))
	return cmd
}

func newLabBenchCommand(g *globals, name, runRoot *string) *cobra.Command {
	var o lab.BenchOptions
	var subnet, k8sBin string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Compare kubedirect with the real kube-proxy (iptables, nftables) in a 2-node lab",
		Long: `bench builds a 2-node lab, creates --services ClusterIP Services, then for each system measures
new connections per second and their p50/p99 latency from the outside client through a NodePort to a
pod on the other node (--backend remote) or the same node, and the time from creating a Service to its first successful connection. It prints JSON with
the ratios kubedirect / kube-proxy. Needs hack/build-k8s.sh kube-apiserver etcd kube-proxy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := setLabOptions(&o.Lab, g, "bench", *name, *runRoot, subnet, k8sBin); err != nil {
				return err
			}
			res, err := lab.Bench(cmd.Context(), o)
			if err != nil {
				return fmt.Errorf("lab bench: %w", err)
			}
			printAgentCost(g.stderr, res)
			out := map[string]any{"services": o.Services, "endpointsPerService": o.EndpointsPerService, "results": res}
			var kd *lab.BenchResult
			for i := range res {
				if res[i].System == lab.SystemKubedirect {
					kd = &res[i]
				}
			}
			if kd != nil {
				ratios := map[string]any{}
				for _, r := range res {
					if r.System == lab.SystemKubedirect {
						continue
					}
					ratios[r.System] = map[string]float64{
						"connsPerSec":   lab.Ratio(kd.ConnsPerSec, r.ConnsPerSec),
						"p50":           lab.Ratio(float64(kd.P50), float64(r.P50)),
						"p99":           lab.Ratio(float64(kd.P99), float64(r.P99)),
						"createToFirst": lab.Ratio(float64(kd.CreateToFirst), float64(r.CreateToFirst)),
						"cpuPerConn":    lab.Ratio(float64(kd.CPUPerConn), float64(r.CPUPerConn)),
					}
				}
				out["kubedirectOver"] = ratios
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	cmd.Flags().IntVar(&o.Services, "services", 10000, "ClusterIP Services programmed besides the measured NodePort")
	cmd.Flags().IntVar(&o.EndpointsPerService, "endpoints-per-service", 5, "endpoints of each of those Services (the backend pod, then addresses that get no traffic)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 5*time.Second, "load duration per system")
	cmd.Flags().IntVar(&o.Workers, "workers", 8, "concurrent clients")
	cmd.Flags().StringVar(&o.Probe, "probe", "http", "what a measured connection does: http (connect, one request, close), connect (TCP handshake to nginx, then reset) or wrk (wrk against nginx, one request per connection; --workers is its connection count)")
	cmd.Flags().StringVar(&o.Backend, "backend", lab.BackendRemote, "where the NodePort's backend runs: remote (the other node) or local")
	cmd.Flags().StringSliceVar(&o.Systems, "systems", nil, "systems to measure (kube-proxy-iptables, kube-proxy-nftables, kubedirect)")
	cmd.Flags().StringVar(&subnet, "subnet", "192.168.250.0/24", "underlay /24 of the benchmark lab")
	cmd.Flags().StringVar(&k8sBin, "k8s-bin-dir", "", "directory with etcd, kube-apiserver and kube-proxy")
	return cmd
}

// setLabOptions fills o's fields from the flags every lab verb has: --name and --run-root (on lab),
// --subnet and --k8s-bin-dir (empty: defaultK8sBinDir); verb names the command in an error.
func setLabOptions(o *lab.Options, g *globals, verb, name, runRoot, subnet, k8sBin string) error {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return fmt.Errorf("lab %s: --subnet: %w", verb, err)
	}
	if k8sBin == "" {
		k8sBin = defaultK8sBinDir()
	}
	o.Name, o.RunRoot, o.Subnet, o.K8sBinDir, o.Logger = name, runRoot, p, k8sBin, g.logger()
	return nil
}

// defaultK8sBinDir is $KUBEDIRECT_K8S_BIN, else hack/build-k8s.sh's default cache for v1.34.4.
func defaultK8sBinDir() string {
	if d := os.Getenv("KUBEDIRECT_K8S_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kubedirect", "k8s", "v1.34.4", "bin")
}

// printAgentCost writes a table of the agent's start, memory and CPU per 1,000 changes (the JSON has the
// same numbers) for the results that carry them.
func printAgentCost(w io.Writer, res []lab.BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tDATAPATH LOADED\tINFORMERS SYNCED\tPROGRAMMING\tSTART TO READY\tHEAP AFTER SYNC\tRSS\tRSS ANON\tRSS FILE\tPEAK RSS (HWM)\tCPU / 1000 CHANGES")
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	for _, r := range res {
		if c := r.Agent; c != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.System, c.DatapathLoaded.Round(time.Millisecond),
				c.InformersSynced.Round(time.Millisecond), c.Programming.Round(time.Millisecond), c.StartToReady.Round(time.Millisecond),
				mib(c.HeapInuseAfterSyncBytes), mib(c.Memory.RSSBytes), mib(c.Memory.AnonBytes), mib(c.Memory.FileBytes),
				mib(c.Memory.PeakRSSBytes), c.CPUPer1000Changes.Round(time.Millisecond))
		}
	}
	_ = tw.Flush()
}

func newLabScaleCommand(g *globals, name, runRoot *string) *cobra.Command {
	var o lab.ScaleOptions
	var subnet, k8sBin string
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Measure the agents at scale: many nodes, many Services, a burst of changes",
		Long: `scale builds a lab of --nodes nodes (no pods), creates --services ClusterIP Services with
--endpoints-per-service endpoints each through the API (addresses nothing answers on), starts one agent per
node and measures the time until every agent holds every Service; then it writes --changes Service changes
(half a port, half the endpoints) and measures the time until every node programmed all of them, the
agents' change-to-programmed p50/p99, their memory and CPU, and the API server's watches, requests and
bytes. At the end every node's pinned maps are compared with the desired state; a difference fails the
command. Prints JSON on stdout and a table on stderr. Needs root and hack/build-k8s.sh kube-apiserver etcd.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := setLabOptions(&o.Lab, g, "scale", *name, *runRoot, subnet, k8sBin); err != nil {
				return err
			}
			if !cmd.Flags().Changed("name") {
				// a lab of the same name is removed first: never the one `lab up` made
				o.Lab.Name = "kdscale"
			}
			res, err := lab.Scale(cmd.Context(), o)
			if res != nil {
				fmt.Fprint(g.stderr, res.Table())
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil && err == nil {
					err = jerr
				}
			}
			if err != nil {
				return fmt.Errorf("lab scale: %w", err)
			}
			if len(res.Differences) > 0 {
				return fmt.Errorf("lab scale: %d of %d nodes differ from the desired state", res.Nodes-res.Verified, res.Nodes)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Lab.Nodes, "nodes", 50, "number of nodes (at most 89)")
	cmd.Flags().IntVar(&o.Services, "services", 10000, "ClusterIP Services")
	cmd.Flags().IntVar(&o.EndpointsPerService, "endpoints-per-service", 5, "ready endpoints of each Service")
	cmd.Flags().IntVar(&o.Changes, "changes", 1000, "Service changes in the burst")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound of each wait (convergence, burst)")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "leave the lab up afterwards (remove it with lab down)")
	cmd.Flags().StringVar(&subnet, "subnet", "192.168.249.0/24", "underlay /24 of the scale lab")
	cmd.Flags().StringVar(&k8sBin, "k8s-bin-dir", "", "directory with etcd and kube-apiserver")
	return cmd
}
