// Package observe reads what the agents' datapaths hold, through the Kubernetes API only: it runs
// `kubedirect agent dump` in each node's agent pod (provision/agentexec) and lists the Services,
// EndpointSlices, Nodes and Pods that name the entries (dataplane/inspect). status, inspect, verify and
// validate cluster share it.
package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DumpCommand is the in-pod command that prints a node's inspect.Dump.
var DumpCommand = agentexec.AgentCommand("dump", "-o", "json")

// Snapshot is the cluster's objects and every node's dump, read at about the same time.
type Snapshot struct {
	Cluster *inspect.Cluster
	// Dumps are the nodes' dumps, sorted by node; NodeErrors say why a node has none (by node name).
	Dumps      []*inspect.Dump
	NodeErrors map[string]error
}

// Err joins the node errors (each names its node).
func (s *Snapshot) Err() error {
	var errs []error
	for _, e := range s.NodeErrors {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Read lists the cluster's objects and dumps the nodes named (every node running an agent when none).
// An error means nothing could be read; a node that could not be dumped is in NodeErrors.
func Read(ctx context.Context, ac *agentexec.Client, nodes ...string) (*Snapshot, error) {
	c, err := ListCluster(ctx, ac.Kube)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Cluster: c, NodeErrors: map[string]error{}}
	agents, err := ac.Agents(ctx, nodes...)
	if err != nil && len(agents) == 0 {
		return nil, err
	}
	if err != nil {
		// Nodes without an agent are reported with the others that fail.
		s.NodeErrors["(agents)"] = err
	}
	for _, r := range ac.OutputAll(ctx, agents, DumpCommand) {
		if r.Err != nil {
			s.NodeErrors[r.Agent.Node] = r.Err
			continue
		}
		var d inspect.Dump
		if err := json.Unmarshal(r.Stdout, &d); err != nil {
			s.NodeErrors[r.Agent.Node] = fmt.Errorf("node %s: decode dump: %w", r.Agent.Node, err)
			continue
		}
		if d.Node == "" {
			d.Node = r.Agent.Node
		}
		s.Dumps = append(s.Dumps, &d)
	}
	return s, nil
}

// ListCluster reads the objects that name the datapath's entries.
func ListCluster(ctx context.Context, kc kubernetes.Interface) (*inspect.Cluster, error) {
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	svcs, err := kc.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	eps, err := kc.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices: %w", err)
	}
	pods, err := kc.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	c := &inspect.Cluster{}
	for i := range nodes.Items {
		c.Nodes = append(c.Nodes, &nodes.Items[i])
	}
	for i := range svcs.Items {
		c.Services = append(c.Services, &svcs.Items[i])
	}
	for i := range eps.Items {
		c.Slices = append(c.Slices, &eps.Items[i])
	}
	for i := range pods.Items {
		c.Pods = append(c.Pods, &pods.Items[i])
	}
	return c, nil
}

// VerifyResult is what `kubedirect verify -o json` prints.
type VerifyResult struct {
	// Nodes are the nodes compared.
	Nodes []string `json:"nodes"`
	// Differences are every difference found, by node.
	Differences []inspect.Difference `json:"differences"`
	// Errors are the nodes that could not be compared, and why.
	Errors []string `json:"errors,omitempty"`
}

// Clean reports whether every node was compared and none differs.
func (r *VerifyResult) Clean() bool { return len(r.Differences) == 0 && len(r.Errors) == 0 }

// Verify compares every node's maps with the desired state the agent's own translation computes from
// the API server's objects. The agents need a moment to follow a change: while differences remain it
// reads again, every interval, for up to settle, and returns the last result.
func Verify(ctx context.Context, ac *agentexec.Client, settle, interval time.Duration, nodes ...string) (*VerifyResult, error) {
	deadline := time.Now().Add(settle)
	for {
		r, err := verifyOnce(ctx, ac, nodes...)
		if err != nil || r.Clean() || time.Now().Add(interval).After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(interval):
		}
	}
}

func verifyOnce(ctx context.Context, ac *agentexec.Client, nodes ...string) (*VerifyResult, error) {
	s, err := Read(ctx, ac, nodes...)
	if err != nil {
		return nil, err
	}
	r := &VerifyResult{Differences: []inspect.Difference{}}
	for _, e := range s.NodeErrors {
		r.Errors = append(r.Errors, e.Error())
	}
	slices.Sort(r.Errors)
	for _, d := range s.Dumps {
		r.Nodes = append(r.Nodes, d.Node)
		want, err := s.Cluster.Desired(d.Node, d.Config.Mode)
		if err != nil {
			r.Errors = append(r.Errors, err.Error())
			continue
		}
		r.Differences = append(r.Differences, s.Cluster.Diff(want, d)...)
	}
	return r, nil
}
