// Package agentexec reaches the kubedirect agent on each node through the Kubernetes API only: it finds
// the pod the chart's DaemonSet runs on a node and executes a command in its agent container through the
// pods/exec subresource, as kubectl exec does (WebSocket, falling back to SPDY). Nothing new listens on
// the nodes, so it works wherever the API server is reachable (kind, AWS).
//
// The commands run are hidden subcommands of `kubedirect agent` (the agent image is the kubedirect
// binary): AgentCommand builds their command line. A long-running command keeps its standard input
// open for as long as the caller's context lives (HoldStdin) and exits when it reaches EOF
// (UntilStdinCloses), so it stops when the CLI goes away.
package agentexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

const (
	// Selector selects the kubedirect agent's DaemonSet and pods (the chart's selector labels).
	Selector = "app.kubernetes.io/name=kubedirect,app.kubernetes.io/component=agent"
	// Namespace is where the chart runs the agents.
	Namespace = "kube-system"
	// Container is the agent's container in the pod (the chart's name for it).
	Container = "agent"
	// Binary is the kubedirect binary's path in the agent image.
	Binary = "/usr/local/bin/kubedirect"
	// DefaultParallel bounds how many nodes are reached at once.
	DefaultParallel = 8
)

// ErrNoAgent is returned (wrapped, with the node's name) when a node runs no usable agent pod.
var ErrNoAgent = errors.New("no running kubedirect agent pod")

// AgentCommand is the command line of `kubedirect agent ARGS...` in the agent container.
func AgentCommand(args ...string) []string {
	return append([]string{Binary, "agent"}, args...)
}

// Agent is the agent pod of one node.
type Agent struct {
	// Node is the node's name; Pod and Namespace name the pod.
	Node, Pod, Namespace string
	// Ready is the pod's Ready condition.
	Ready bool
}

// Client finds agent pods and runs commands in them.
type Client struct {
	// Kube lists the pods. Required.
	Kube kubernetes.Interface
	// Config is the REST configuration exec connects with. Required for Exec.
	Config *rest.Config
	// Namespace of the agents. Default: Namespace.
	Namespace string
	// Parallel bounds the nodes reached at once by OutputAll. Default: DefaultParallel.
	Parallel int
}

// New returns a Client for the cluster rc reaches.
func New(rc *rest.Config) (*Client, error) {
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	return &Client{Kube: kc, Config: rc}, nil
}

func (c *Client) namespace() string {
	if c.Namespace == "" {
		return Namespace
	}
	return c.Namespace
}

// Agents returns the agent pod of each node, sorted by node name: of every node running one when nodes
// is empty, else of exactly the nodes named, failing (naming every such node, wrapping ErrNoAgent) when
// one of them has none.
func (c *Client) Agents(ctx context.Context, nodes ...string) ([]Agent, error) {
	list, err := c.Kube.CoreV1().Pods(c.namespace()).List(ctx, metav1.ListOptions{LabelSelector: Selector})
	if err != nil {
		return nil, fmt.Errorf("list agent pods: %w", err)
	}
	byNode := ByNode(list.Items)
	var out []Agent
	add := func(p *corev1.Pod) {
		out = append(out, Agent{Node: p.Spec.NodeName, Pod: p.Name, Namespace: p.Namespace, Ready: PodReady(p)})
	}
	if len(nodes) == 0 {
		for _, p := range byNode {
			if p.Status.Phase == corev1.PodRunning {
				add(p)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
		return out, nil
	}
	var errs []error
	for _, n := range slices.Compact(slices.Sorted(slices.Values(nodes))) {
		p, ok := byNode[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("node %s: %w (selector %s in namespace %s)", n, ErrNoAgent, Selector, c.namespace()))
		case p.Status.Phase != corev1.PodRunning:
			errs = append(errs, fmt.Errorf("node %s: %w (pod %s is %s)", n, ErrNoAgent, p.Name, p.Status.Phase))
		default:
			add(p)
		}
	}
	return out, errors.Join(errs...)
}

// ByNode picks one agent pod per node among pods: one being deleted never, a Ready one over one that is
// not (a DaemonSet rollout briefly runs two).
func ByNode(pods []corev1.Pod) map[string]*corev1.Pod {
	byNode := map[string]*corev1.Pod{}
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			continue
		}
		if old, ok := byNode[p.Spec.NodeName]; !ok || (!PodReady(old) && PodReady(p)) {
			byNode[p.Spec.NodeName] = p
		}
	}
	return byNode
}

// PodReady reports whether the pod runs and its Ready condition holds.
func PodReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Streams are a command's standard streams. A nil Stdin runs the command without one; nil Stdout or
// Stderr discard.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs cmd in a's agent container and streams its output as it comes, until it exits or ctx ends.
// A command that exits non-zero returns an error that ExitCode reads. Errors name the node.
func (c *Client) Exec(ctx context.Context, a Agent, cmd []string, s Streams) error {
	if err := c.exec(ctx, a, cmd, s); err != nil {
		return fmt.Errorf("node %s: exec %s in pod %s/%s: %w", a.Node, strings.Join(cmd, " "), a.Namespace, a.Pod, err)
	}
	return nil
}

func (c *Client) exec(ctx context.Context, a Agent, cmd []string, s Streams) error {
	if c.Config == nil {
		return errors.New("no REST config")
	}
	req := c.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(a.Namespace).Name(a.Pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: Container,
			Command:   cmd,
			Stdin:     s.Stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ex, err := c.executor(req.URL())
	if err != nil {
		return err
	}
	if s.Stdout == nil {
		s.Stdout = io.Discard
	}
	if s.Stderr == nil {
		s.Stderr = io.Discard
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr})
}

// executor speaks WebSocket (v5 protocol) first and falls back to SPDY when the API server or a proxy
// on the way refuses the upgrade, as kubectl exec does.
func (c *Client) executor(u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(c.Config, http.MethodGet, u.String())
	if err != nil {
		return nil, fmt.Errorf("create websocket executor: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.Config, http.MethodPost, u)
	if err != nil {
		return nil, fmt.Errorf("create spdy executor: %w", err)
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, upgradeRefused)
}

// upgradeRefused tells whether the WebSocket executor failed because the API server or a proxy refused
// the protocol upgrade (then SPDY is tried). It checks k8s.io/streaming's error types, the ones
// client-go's executors return (apimachinery's older copies are other types and never match).
func upgradeRefused(err error) bool {
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

// ExitCode is the exit status of the in-pod command that failed with err, or -1 when err is not a
// command's non-zero exit (the exec itself failed).
func ExitCode(err error) int {
	var ee utilexec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitStatus()
	}
	return -1
}

// Result is what a command printed on one node.
type Result struct {
	Agent          Agent
	Stdout, Stderr []byte
	// Err is why the command failed on this node (it names the node), nil on success.
	Err error
}

// Output runs cmd on a's pod to its end and returns what it printed; stdin, when not nil, is its input.
func (c *Client) Output(ctx context.Context, a Agent, cmd []string, stdin []byte) Result {
	var out, errOut bytes.Buffer
	s := Streams{Stdout: &out, Stderr: &errOut}
	if stdin != nil {
		s.Stdin = bytes.NewReader(stdin)
	}
	err := c.Exec(ctx, a, cmd, s)
	if err != nil && errOut.Len() > 0 {
		// The command's own words say more than its exit status.
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return Result{Agent: a, Stdout: out.Bytes(), Stderr: errOut.Bytes(), Err: err}
}

// OutputAll runs cmd on every agent, at most Parallel at once, and returns the results in agents' order.
func (c *Client) OutputAll(ctx context.Context, agents []Agent, cmd []string) []Result {
	res := make([]Result, len(agents))
	_ = Each(ctx, agents, c.Parallel, func(ctx context.Context, i int, a Agent) error {
		res[i] = c.Output(ctx, a, cmd, nil)
		return res[i].Err
	})
	return res
}

// Each calls fn for every agent, at most limit at once (DefaultParallel when limit <= 0; pass
// len(agents) for long-running streams that must all run together), and returns every error joined.
// Errors fn returns are expected to name the node (Exec's do).
func Each(ctx context.Context, agents []Agent, limit int, fn func(ctx context.Context, i int, a Agent) error) error {
	if limit <= 0 {
		limit = DefaultParallel
	}
	sem := make(chan struct{}, limit)
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("node %s: %w", a.Node, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(ctx, i, a)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// HoldStdin is a standard input for a long-running in-pod command: it sends nothing and reaches EOF when
// ctx ends, so the command (reading it with UntilStdinCloses) stops with the CLI.
func HoldStdin(ctx context.Context) io.Reader {
	r, w := io.Pipe()
	go func() {
		<-ctx.Done()
		_ = w.Close()
	}()
	return r
}

// UntilStdinCloses is the in-pod side of HoldStdin: the returned context ends when stdin reaches EOF
// (or fails), that is when the CLI that started the command went away, or when parent ends.
func UntilStdinCloses(parent context.Context, stdin io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	return ctx, cancel
}
