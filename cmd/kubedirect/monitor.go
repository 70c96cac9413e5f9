package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/flows"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// monitorOptions are monitor's flags.
type monitorOptions struct {
	target  clusterTarget
	nodes   []string
	service string
	ip      string
	port    uint16
	verdict string
	since   time.Duration
	follow  bool
	sample  uint32
	output  string
}

func newMonitorCommand(g *globals) *cobra.Command {
	o := &monitorOptions{}
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Show the flows every node's datapath translated, dropped or rejected, merged by time",
		Long: `monitor reads the flow events of every node's datapath (through the Kubernetes API: it runs
'kubedirect agent flows' in each agent pod) and prints them merged by time: the client as the backend saw
it, the frontend and its Service, the backend, the node, the tunnel peer, the verdict and a drop's reason.

Agents report every drop and reject, and new flows at the agent config's eventSample rate (default: every
new flow); --sample N raises the rate to one in N for the session, which ends with monitor (or at the
latest an hour later, even if monitor is killed). Each agent keeps its last flowHistory flows (default
4096). Flows the datapath or the agent could not keep are counted and reported on standard error.

-o json prints one flow per line: {"time","node","verdict","action","reason","proto","source","frontend",
"service","backend","tunnelPeer","tunnelPeerNode","program"} (empty fields left out).`,
		Example: `  kubedirect monitor --name demo --since 5m
  kubedirect monitor --name demo --verdict drop --follow
  kubedirect monitor --name demo --service default/web --follow --sample 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMonitor(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.target.addFlags(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&o.nodes, "node", nil, "only these nodes (repeatable; default: every node)")
	f.StringVar(&o.service, "service", "", "only flows of this Service (namespace/name)")
	f.StringVar(&o.ip, "ip", "", "only flows whose source, frontend, backend or tunnel peer is this address")
	f.Uint16Var(&o.port, "port", 0, "only flows whose source, frontend or backend port is this port")
	f.StringVar(&o.verdict, "verdict", "", "only flows with this verdict: forward, drop or reject")
	f.DurationVar(&o.since, "since", 0, "flows of this last period (default: every kept flow; with --follow: none)")
	f.BoolVar(&o.follow, "follow", false, "keep printing new flows until interrupted")
	f.Uint32Var(&o.sample, "sample", 0, "with --follow: report one in N new flows while monitor runs (1: every flow)")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("node", o.target.completeNodes(g))
	_ = cmd.RegisterFlagCompletionFunc("service", o.target.completeServices(g))
	_ = cmd.RegisterFlagCompletionFunc("verdict", cobra.FixedCompletions(
		[]cobra.Completion{flows.VerdictForward, flows.VerdictDrop, flows.VerdictReject}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// keptFlows is --since's default without --follow: everything the agents kept.
const keptFlows = 24 * time.Hour

func (o *monitorOptions) check() error {
	switch o.verdict {
	case "", flows.VerdictForward, flows.VerdictDrop, flows.VerdictReject:
	default:
		return fmt.Errorf("monitor: --verdict %q is not forward, drop or reject", o.verdict)
	}
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("monitor: -o %q is not table or json", o.output)
	}
	if o.ip != "" {
		if _, err := netip.ParseAddr(o.ip); err != nil {
			return fmt.Errorf("monitor: --ip: %w", err)
		}
	}
	if o.sample > 0 && !o.follow {
		return errors.New("monitor: --sample needs --follow (the rate returns to the default when monitor exits)")
	}
	return nil
}

// agentArgs is the in-pod command line.
func (o *monitorOptions) agentArgs() []string {
	since := o.since
	if since == 0 && !o.follow {
		since = keptFlows
	}
	args := []string{"flows"}
	if since > 0 {
		args = append(args, "--since", since.String())
	}
	if o.follow {
		args = append(args, "--follow")
	}
	if o.sample > 0 {
		args = append(args, "--sample", fmt.Sprint(o.sample), "--for", flows.MaxOverride.String())
	}
	return args
}

func runMonitor(ctx context.Context, g *globals, o *monitorOptions, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	c, _, err := connectTarget(ctx, g, &o.target)
	if err != nil {
		return err
	}
	agents, err := c.Agents(ctx, o.nodes...)
	if err != nil && len(agents) == 0 {
		return err
	}
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	names, err := loadNames(ctx, c.Kube)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan flows.Record, 256)
	cmdline := agentexec.AgentCommand(o.agentArgs()...)
	var wg sync.WaitGroup
	var execErr error
	wg.Go(func() {
		// every node's stream runs at once: they are long-lived with --follow
		execErr = agentexec.Each(ctx, agents, len(agents), func(ctx context.Context, _ int, a agentexec.Agent) error {
			pr, pw := io.Pipe()
			decoded := make(chan struct{})
			go func() {
				defer close(decoded)
				decodeRecords(pr, a.Node, recs)
			}()
			var errOut strings.Builder
			err := c.Exec(ctx, a, cmdline, agentexec.Streams{Stdin: agentexec.HoldStdin(ctx), Stdout: pw, Stderr: &errOut})
			pw.Close()
			<-decoded // its last records are sent before recs is closed (else: send on closed channel)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
			}
			return nil
		})
	})
	go func() {
		wg.Wait()
		close(recs)
	}()
	p := &flowPrinter{o: o, names: names, w: stdout, lost: map[string]flows.Lost{}}
	var batch []flows.Flow
	for r := range recs {
		switch {
		case r.Error != "":
			fmt.Fprintf(stderr, "error: %s\n", r.Error)
		case r.Lost != nil:
			if o.follow && *r.Lost != p.lost[r.Lost.Node] {
				p.reportLostOf(stderr, *r.Lost)
			}
			p.lost[r.Lost.Node] = *r.Lost
		case r.Flow != nil:
			if o.follow {
				p.print(*r.Flow)
			} else {
				batch = append(batch, *r.Flow)
			}
		}
	}
	slices.SortStableFunc(batch, func(a, b flows.Flow) int { return a.Time.Compare(b.Time) })
	for _, f := range batch {
		p.print(f)
	}
	p.reportLost(stderr)
	return execErr
}

// decodeRecords reads one node's JSON lines into out; a line that is not a record is skipped.
func decodeRecords(r io.Reader, node string, out chan<- flows.Record) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec flows.Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec.Error != "" {
			rec.Error = "node " + node + ": " + rec.Error
		}
		out <- rec
	}
	_, _ = io.Copy(io.Discard, r)
}

// frontendKey finds a Service by the address and port a client sent to.
type frontendKey struct {
	addr  netip.Addr // invalid: a NodePort on any node address
	port  uint16
	proto string
}

// clusterNames are the API server's names for the addresses flows carry.
type clusterNames struct {
	services map[frontendKey]string // "namespace/name:port/PROTO"
	nodes    map[netip.Addr]string  // node address -> node name
}

// loadNames lists Services and Nodes once: flows are named on the client, never on the node.
func loadNames(ctx context.Context, kc kubernetes.Interface) (*clusterNames, error) {
	n := &clusterNames{services: map[frontendKey]string{}, nodes: map[netip.Addr]string{}}
	svcs, err := kc.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		n.addService(&svcs.Items[i])
	}
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, nd := range nodes.Items {
		for _, a := range nd.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				n.nodes[ip] = nd.Name
			}
		}
	}
	return n, nil
}

func (n *clusterNames) addService(s *corev1.Service) {
	var addrs []netip.Addr
	for _, a := range append(append([]string{}, s.Spec.ClusterIPs...), s.Spec.ExternalIPs...) {
		if ip, err := netip.ParseAddr(a); err == nil {
			addrs = append(addrs, ip)
		}
	}
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			addrs = append(addrs, ip)
		}
	}
	for _, p := range s.Spec.Ports {
		name := fmt.Sprintf("%s/%s:%d/%s", s.Namespace, s.Name, p.Port, p.Protocol)
		proto := strings.ToLower(string(p.Protocol))
		for _, a := range addrs {
			n.services[frontendKey{a, uint16(p.Port), proto}] = name
		}
		if p.NodePort != 0 {
			n.services[frontendKey{netip.Addr{}, uint16(p.NodePort), proto}] = name
		}
	}
}

// name fills the flow's Service and tunnel peer node from the API's names.
func (n *clusterNames) name(f *flows.Flow) {
	fe := f.Frontend
	if s, ok := n.services[frontendKey{fe.Addr(), fe.Port(), f.Proto}]; ok {
		f.Service = s
	} else if s, ok := n.services[frontendKey{netip.Addr{}, fe.Port(), f.Proto}]; ok {
		f.Service = s
	}
	if f.TunnelPeer.IsValid() {
		f.TunnelPeerNode = n.nodes[f.TunnelPeer]
	}
}

// flowPrinter filters and prints flows and collects the nodes' loss counts.
type flowPrinter struct {
	o     *monitorOptions
	names *clusterNames
	w     io.Writer
	lost  map[string]flows.Lost
}

// match applies the filters.
func (p *flowPrinter) match(f *flows.Flow) bool {
	o := p.o
	if o.verdict != "" && f.Verdict != o.verdict {
		return false
	}
	if o.service != "" && !strings.HasPrefix(f.Service, o.service+":") {
		return false
	}
	if o.ip != "" {
		ip := netip.MustParseAddr(o.ip)
		if f.Source.Addr() != ip && f.Frontend.Addr() != ip && f.Backend.Addr() != ip && f.TunnelPeer != ip {
			return false
		}
	}
	if o.port != 0 && f.Source.Port() != o.port && f.Frontend.Port() != o.port && f.Backend.Port() != o.port {
		return false
	}
	return true
}

func (p *flowPrinter) print(f flows.Flow) {
	p.names.name(&f)
	if !p.match(&f) {
		return
	}
	if p.o.output == "json" {
		b, _ := json.Marshal(f)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	fmt.Fprintln(p.w, flowLine(f))
}

// flowLine is a flow in the table output, as hubble observe prints one:
//
//	04:12:01.123 demo-worker FORWARD tcp 172.18.0.1:40312 -> 172.18.0.3:30080 (default/web:80/TCP) => 10.244.2.5:8080 via demo-worker2 (172.18.0.4)
func flowLine(f flows.Flow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s %s -> %s", f.Time.Local().Format("15:04:05.000"), f.Node, strings.ToUpper(f.Verdict),
		f.Proto, f.Source, f.Frontend)
	if f.Service != "" {
		fmt.Fprintf(&b, " (%s)", f.Service)
	}
	if f.Backend.IsValid() {
		fmt.Fprintf(&b, " => %s", f.Backend)
	}
	if f.TunnelPeer.IsValid() {
		if f.TunnelPeerNode != "" {
			fmt.Fprintf(&b, " via %s (%s)", f.TunnelPeerNode, f.TunnelPeer)
		} else {
			fmt.Fprintf(&b, " via %s", f.TunnelPeer)
		}
	}
	if f.Reason != "" {
		fmt.Fprintf(&b, " reason %s", f.Reason)
	}
	return b.String()
}

// reportLost says, per node, how many flows were not kept: never silent.
func (p *flowPrinter) reportLost(w io.Writer) {
	nodes := make([]string, 0, len(p.lost))
	for n := range p.lost {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		p.reportLostOf(w, p.lost[n])
	}
}

func (p *flowPrinter) reportLostOf(w io.Writer, l flows.Lost) {
	if l.RingBuffer+l.History+l.Follow > 0 {
		fmt.Fprintf(w, "lost flows on node %s: %d not taken by the full ring buffer (since the datapath was loaded), %d pushed out of the agent's history, %d not read fast enough\n",
			l.Node, l.RingBuffer, l.History, l.Follow)
	}
}
