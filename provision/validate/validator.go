package validate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	dpobserve "github.com/kubedirect/kubedirect/provision/observe"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Defaults of Validator.
const (
	DefaultAgentNamespace   = agentexec.Namespace
	DefaultAgentHealthPort  = 9890
	DefaultEchoHTTPPort     = 8080
	DefaultEchoUDPPort      = 8081
	DefaultBaselineHTTPPort = 29080
	DefaultBaselineUDPPort  = 29081
	DefaultPodTimeout       = 2 * time.Minute
	DefaultRowTimeout       = 10 * time.Second
	DefaultCallTimeout      = 2 * time.Second
	// DefaultReachHint explains an unreachable node on kind.
	DefaultReachHint = "the client must reach the node addresses directly: not possible with Docker Desktop or a remote Docker daemon"
	// NamespacePrefix starts the name of every probe namespace.
	NamespacePrefix = "kubedirect-validate-"
)

// StatusFunc reads an agent pod's /status.
type StatusFunc func(ctx context.Context, pod *corev1.Pod) ([]byte, error)

// Validator validates one cluster. Only Client is required.
type Validator struct {
	// Client reaches the cluster (as an admin: the proof creates a namespace, pods and Services).
	Client kubernetes.Interface
	// Cluster is the cluster's name, for the report.
	Cluster string
	// Prober is the outside client. Default: HostProber.
	Prober Prober
	// Status reads an agent's /status. Default: through the API server's pods/proxy.
	Status StatusFunc
	// AgentNamespace is where the chart is installed. Default: kube-system.
	AgentNamespace string
	// Image and PullPolicy of the echo pods. Default: those of the agent DaemonSet (the self-image).
	Image, PullPolicy string
	// EchoHTTPPort/EchoUDPPort are the backends' ports; BaselineHTTPPort/BaselineUDPPort the host-network
	// echo's, which must be free on every node.
	EchoHTTPPort, EchoUDPPort, BaselineHTTPPort, BaselineUDPPort int
	// PodTimeout bounds the wait for the probe pods; RowTimeout the retries of one matrix row (the agent
	// may still be programming a new Service); CallTimeout one call.
	PodTimeout, RowTimeout, CallTimeout time.Duration
	// PollInterval is how often pods are polled. Default: 1s.
	PollInterval time.Duration
	// Address is the address of a node the outside client calls. Default: NodeIP (the InternalIP).
	Address func(*corev1.Node) string
	// ReachHint says, when the client cannot reach a node's host-network echo, what must allow it.
	// Default: DefaultReachHint.
	ReachHint string
	// Log receives progress details. Default: discarded.
	Log *slog.Logger
	// Verify compares every node's maps with the API server's objects (observe.Verify) while the probe
	// Services exist; nil skips the check.
	Verify func(ctx context.Context) (*dpobserve.VerifyResult, error)
}

// withDefaults returns a copy of v with every unset option defaulted; v itself is left as the caller
// set it, so one Validator can run again (RunWithWait) or be reused for another cluster.
func (v *Validator) withDefaults() *Validator {
	w := *v
	w.setDefaults()
	return &w
}

func (v *Validator) setDefaults() {
	if v.ReachHint == "" {
		v.ReachHint = DefaultReachHint
	}
	if v.Prober == nil {
		v.Prober = HostProber{}
	}
	if v.AgentNamespace == "" {
		v.AgentNamespace = DefaultAgentNamespace
	}
	if v.Status == nil {
		v.Status = v.proxyStatus
	}
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setInt(&v.EchoHTTPPort, DefaultEchoHTTPPort)
	setInt(&v.EchoUDPPort, DefaultEchoUDPPort)
	setInt(&v.BaselineHTTPPort, DefaultBaselineHTTPPort)
	setInt(&v.BaselineUDPPort, DefaultBaselineUDPPort)
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setDur(&v.PodTimeout, DefaultPodTimeout)
	setDur(&v.RowTimeout, DefaultRowTimeout)
	setDur(&v.CallTimeout, DefaultCallTimeout)
	setDur(&v.PollInterval, time.Second)
	if v.Log == nil {
		v.Log = slog.New(slog.DiscardHandler)
	}
}

// proxyStatus reads /status through the API server's pods/proxy subresource.
func (v *Validator) proxyStatus(ctx context.Context, pod *corev1.Pod) ([]byte, error) {
	port := DefaultAgentHealthPort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "health" {
				port = int(p.ContainerPort)
			}
		}
	}
	return v.Client.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, strconv.Itoa(port), agentstatus.Path, nil).DoRaw(ctx)
}

// Run validates once. An error means the validation could not be carried out (the API server is
// unreachable, ctx ended); a failed check is reported in the Report, not as an error.
func (v *Validator) Run(ctx context.Context) (*Report, error) {
	return v.withDefaults().run(ctx)
}

// run is Run on a defaulted copy, which it may change (the echo image found in the DaemonSet).
func (v *Validator) run(ctx context.Context) (*Report, error) {
	rep := &Report{Cluster: v.Cluster}
	nodes, err := v.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	rep.Checks = append(rep.Checks, CheckNodes(nodes.Items)...)
	sys, err := v.Client.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list kube-system pods: %w", err)
	}
	rep.Checks = append(rep.Checks, CheckSystemPods(sys.Items)...)
	dss, err := v.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list kube-system daemonsets: %w", err)
	}
	rep.Checks = append(rep.Checks, CheckKubeProxy(dss.Items, sys.Items))

	agentDS, err := v.Client.AppsV1().DaemonSets(v.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return nil, fmt.Errorf("list agent daemonsets: %w", err)
	}
	if len(agentDS.Items) == 0 {
		rep.Checks = append(rep.Checks, Check{Name: "agent installed", Target: v.AgentNamespace, Result: Fail,
			Detail: "no kubedirect DaemonSet (" + AgentSelector + ")"})
	} else if v.Image == "" {
		for _, c := range agentDS.Items[0].Spec.Template.Spec.Containers {
			if c.Name == "agent" || v.Image == "" {
				v.Image, v.PullPolicy = c.Image, string(c.ImagePullPolicy)
			}
		}
	}
	agents, err := v.Client.CoreV1().Pods(v.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return nil, fmt.Errorf("list agent pods: %w", err)
	}
	statuses := map[string]AgentStatus{}
	for i := range agents.Items {
		p := &agents.Items[i]
		if agentexec.PodReady(p) {
			body, err := v.Status(ctx, p)
			statuses[p.Name] = AgentStatus{Body: body, Err: err}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Checks = append(rep.Checks, CheckAgents(nodes.Items, agents.Items, statuses)...)

	if blocked := blockingFailures(rep.Checks); blocked != "" {
		rep.Checks = append(rep.Checks, Check{Name: "source-IP proof", Target: "cluster", Result: Skip, Detail: "not run: " + blocked})
		rep.Finish()
		return rep, nil
	}
	if err := v.prove(ctx, rep, nodes.Items); err != nil {
		return nil, err
	}
	rep.Finish()
	return rep, nil
}

// blockingFailures names the failed checks that make the source-IP proof pointless: nodes or agents
// not ready, kube-proxy present. Other kube-system pods (CoreDNS, ...) do not take part in the proof, so
// their failure is reported without hiding what the proof would show.
func blockingFailures(checks []Check) string {
	var names []string
	seen := map[string]bool{}
	for _, c := range checks {
		if c.Result != Fail || c.Name == "kube-system pod ready" || seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		names = append(names, c.Name)
	}
	if len(names) == 0 {
		return ""
	}
	return "failed: " + strings.Join(names, ", ")
}

// prove runs the source-IP proof in a fresh namespace, which it deletes whatever happens (also when ctx
// is cancelled, e.g. by Ctrl-C): setup makes the probe pods and Services, matrix calls every case.
func (v *Validator) prove(ctx context.Context, rep *Report, nodeList []corev1.Node) (err error) {
	nodes := v.probeNodes(nodeList)
	if v.Image == "" {
		rep.Checks = append(rep.Checks, Check{Name: "source-IP proof", Target: "cluster", Result: Fail, Detail: "no echo image: the agent DaemonSet names none"})
		return nil
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	ns := NamespacePrefix + hex.EncodeToString(suffix)
	var nsObj corev1.Namespace
	if err := renderObject("namespace.yaml", struct{ Namespace string }{ns}, &nsObj); err != nil {
		return err
	}
	if _, err := v.Client.CoreV1().Namespaces().Create(ctx, &nsObj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create probe namespace %s: %w", ns, err)
	}
	v.Log.Debug("probe namespace created", "namespace", ns)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		c := Check{Name: "probe namespace removed", Target: ns, Result: Pass}
		if derr := v.Client.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{}); derr != nil {
			c.Result, c.Detail = Fail, derr.Error()
			if err == nil && ctx.Err() == nil {
				err = fmt.Errorf("delete probe namespace %s: %w", ns, derr)
			}
		}
		rep.Checks = append(rep.Checks, c)
	}()
	services, err := v.setup(ctx, rep, ns, nodes)
	if err != nil || services == nil {
		return err
	}
	if err := v.matrix(ctx, rep, nodes, services); err != nil {
		return err
	}
	rep.Checks = append(rep.Checks, v.verify(ctx)...)
	return nil
}

// verify runs Verify and reports one check per node: its maps hold what the API server says.
func (v *Validator) verify(ctx context.Context) []Check {
	if v.Verify == nil {
		return nil
	}
	const name = "datapath matches API"
	r, err := v.Verify(ctx)
	if err != nil {
		return []Check{{Name: name, Target: "cluster", Result: Fail, Detail: err.Error()}}
	}
	var out []Check
	for _, n := range r.Nodes {
		c := Check{Name: name, Target: n, Result: Pass, Detail: "0 differences"}
		var diffs []string
		for _, d := range r.Differences {
			if d.Node == n {
				diffs = append(diffs, d.String())
			}
		}
		if len(diffs) > 0 {
			c.Result, c.Detail = Fail, fmt.Sprintf("%d differences: %s", len(diffs), strings.Join(diffs, "; "))
		}
		out = append(out, c)
	}
	for _, e := range r.Errors {
		out = append(out, Check{Name: name, Target: "cluster", Result: Fail, Detail: e})
	}
	return out
}

// probeNodes are the nodes of the proof, each with the address the outside client calls.
func (v *Validator) probeNodes(nodeList []corev1.Node) []ProbeNode {
	nodes := ProbeNodes(nodeList)
	if v.Address == nil {
		return nodes
	}
	byName := map[string]*corev1.Node{}
	for i := range nodeList {
		byName[nodeList[i].Name] = &nodeList[i]
	}
	for i := range nodes {
		if a := v.Address(byName[nodes[i].Name]); a != "" {
			nodes[i].IP = a
		}
	}
	return nodes
}

// setup creates, in namespace ns, an echo backend on the pod network and a host-network baseline echo
// on every node, and per backend node one Service per policy; it waits for the pods and records that
// as a check. It returns the Services by "label/policy", or nil when the pods did not become ready.
func (v *Validator) setup(ctx context.Context, rep *Report, ns string, nodes []ProbeNode) (map[string]*corev1.Service, error) {
	var podNames []string
	for _, n := range nodes {
		for _, p := range []podParams{
			{Name: "echo-" + n.Label, Role: "backend", HTTPPort: v.EchoHTTPPort, UDPPort: v.EchoUDPPort},
			{Name: "baseline-" + n.Label, Role: "baseline", HostNetwork: true, HTTPPort: v.BaselineHTTPPort, UDPPort: v.BaselineUDPPort},
		} {
			p.Namespace, p.NodeLabel, p.Hostname, p.Image, p.PullPolicy = ns, n.Label, n.Hostname, v.Image, v.PullPolicy
			if p.PullPolicy == "" {
				p.PullPolicy = string(corev1.PullIfNotPresent)
			}
			var pod corev1.Pod
			if err := renderObject("echo-pod.yaml", p, &pod); err != nil {
				return nil, err
			}
			if _, err := v.Client.CoreV1().Pods(ns).Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
				return nil, fmt.Errorf("create probe pod %s: %w", p.Name, err)
			}
			podNames = append(podNames, p.Name)
		}
	}
	services := map[string]*corev1.Service{}
	for _, n := range nodes {
		for _, pol := range Policies {
			sp := serviceParams{Namespace: ns, Name: "echo-" + n.Label + "-" + strings.ToLower(string(pol)), NodeLabel: n.Label, Policy: string(pol),
				HTTPPort: v.EchoHTTPPort, UDPPort: v.EchoUDPPort}
			var svc corev1.Service
			if err := renderObject("service.yaml", sp, &svc); err != nil {
				return nil, err
			}
			created, err := v.Client.CoreV1().Services(ns).Create(ctx, &svc, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("create probe service %s: %w", sp.Name, err)
			}
			services[n.Label+"/"+string(pol)] = created
		}
	}
	ready, problems, err := v.waitPods(ctx, ns, podNames)
	if err != nil {
		return nil, err
	}
	if !ready {
		rep.Checks = append(rep.Checks, Check{Name: "probe pods ready", Target: ns, Result: Fail, Detail: problems})
		return nil, nil
	}
	rep.Checks = append(rep.Checks, Check{Name: "probe pods ready", Target: ns, Result: Pass, Detail: fmt.Sprintf("%d pods", len(podNames))})
	return services, nil
}

// matrix measures the baseline (the client address the host-network echo sees) and then calls every
// case of Plan(nodes) through the Services setup made, into rep.Matrix.
func (v *Validator) matrix(ctx context.Context, rep *Report, nodes []ProbeNode, services map[string]*corev1.Service) error {
	base, checks := baseline(ctx, v.Prober, nodes, v.BaselineHTTPPort, v.BaselineUDPPort, v.RowTimeout, v.CallTimeout, v.ReachHint)
	rep.Checks = append(rep.Checks, checks...)
	nodeIPs := map[string]string{}
	for _, n := range nodes {
		nodeIPs[n.IP] = n.Name
	}
	cases := Plan(nodes)
	rows := make([]Row, len(cases))
	// Rows that must answer go first: they give the agent time to program the new Services, so a
	// silent "no reply expected" row is not mistaken for one that is not programmed yet.
	for _, wantReply := range []bool{true, false} {
		for i, c := range cases {
			if c.ExpectsReply() != wantReply {
				continue
			}
			svc := services[c.Backend.Label+"/"+string(c.Policy)]
			port, err := nodePort(svc, c.Protocol)
			if err != nil {
				rows[i] = Judge(Observation{Case: c, Err: err}, base[c.Ingress.Name][c.Protocol], nodeIPs)
				continue
			}
			rows[i] = observe(ctx, v.Prober, c, probeAddr(c.Ingress.IP, port), base[c.Ingress.Name][c.Protocol], nodeIPs, v.RowTimeout, v.CallTimeout)
			v.Log.Debug("probe", "node", c.Ingress.Name, "backend", c.Placement, "policy", c.Policy, "protocol", c.Protocol, "result", rows[i].Result)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	rep.Matrix = rows
	return nil
}

// waitPods waits until every named pod is Ready, or PodTimeout; then it says which are not and why.
func (v *Validator) waitPods(ctx context.Context, ns string, names []string) (bool, string, error) {
	var problems []string
	var listErr error
	err := wait.PollUntilContextTimeout(ctx, v.PollInterval, v.PodTimeout, true, func(context.Context) (bool, error) {
		list, err := v.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			listErr = err
			return false, fmt.Errorf("list probe pods: %w", err)
		}
		byName := map[string]*corev1.Pod{}
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
		problems = problems[:0]
		for _, name := range names {
			p, ok := byName[name]
			switch {
			case !ok:
				problems = append(problems, name+": missing")
			case !agentexec.PodReady(p):
				problems = append(problems, fmt.Sprintf("%s on %s: %s", name, p.Spec.NodeName, podProblem(p)))
			}
		}
		return len(problems) == 0, nil
	})
	switch {
	case err == nil:
		return true, "", nil
	case ctx.Err() != nil:
		return false, "", ctx.Err()
	case listErr != nil:
		return false, "", err
	}
	return false, joinProblems(problems), nil
}

func joinProblems(p []string) string {
	if len(p) > 3 {
		return fmt.Sprintf("%s; and %d more", strings.Join(p[:3], "; "), len(p)-3)
	}
	return strings.Join(p, "; ")
}

// RunWithWait validates until the cluster passes or wait has passed since the start, retrying every
// interval; wait 0 validates once. onRetry (optional) is told of every failed attempt before the next.
// It returns the last attempt's report, or its error when it could not produce one (then the report is
// nil).
func (v *Validator) RunWithWait(ctx context.Context, waitFor, interval time.Duration, onRetry func(*Report, error)) (*Report, error) {
	if waitFor <= 0 {
		return v.Run(ctx)
	}
	deadline := time.Now().Add(waitFor)
	var rep *Report
	var err error
	perr := wait.PollUntilContextTimeout(ctx, interval, waitFor, true, func(context.Context) (bool, error) {
		rep, err = v.Run(ctx)
		if (err == nil && rep.Passed) || time.Now().Add(interval).After(deadline) || ctx.Err() != nil {
			return true, nil
		}
		if onRetry != nil {
			onRetry(rep, err)
		}
		return false, nil
	})
	if perr != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return rep, err
}
