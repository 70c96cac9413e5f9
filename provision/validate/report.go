// Package validate decides whether a kubedirect cluster works: its nodes and system pods are ready,
// kube-proxy is absent, the agent runs and has programmed its maps on every node, and, the product's
// promise, a NodePort backend sees the real address of a client outside the cluster, on every node,
// for a local and a remote backend, with externalTrafficPolicy Cluster and Local, over TCP and UDP.
//
// The decisions are pure functions over what was observed (CheckNodes, CheckAgents, Judge, ...), so
// they are tested without a cluster; Validator gathers the observations with client-go and an outside
// client (Prober).
package validate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result is the outcome of one check or matrix row.
type Result string

// Results.
const (
	Pass Result = "PASS"
	Fail Result = "FAIL"
	// Skip marks a check that was not run because an earlier one failed.
	Skip Result = "SKIP"
)

// Check is one cluster check: a condition on one target (a node, a pod, the cluster).
type Check struct {
	// Name of the check, e.g. "node ready".
	Name string `json:"name"`
	// Target is what was checked, e.g. a node or pod name.
	Target string `json:"target"`
	// Result of the check.
	Result Result `json:"result"`
	// Detail explains a failure, or adds what was seen.
	Detail string `json:"detail,omitempty"`
}

// Row is one row of the source-IP matrix: a client outside the cluster called Node's NodePort of a
// Service whose only backend is on BackendNode.
type Row struct {
	// Node is the node whose NodePort was called (the ingress node) and NodeIP the address called.
	Node   string `json:"node"`
	NodeIP string `json:"nodeIP"`
	// Backend is "local" (the backend runs on Node) or "remote" (on BackendNode, another node).
	Backend     string `json:"backend"`
	BackendNode string `json:"backendNode"`
	// Policy is the Service's externalTrafficPolicy: Cluster or Local.
	Policy string `json:"policy"`
	// Protocol is TCP or UDP.
	Protocol string `json:"protocol"`
	// Seen is the source IP the backend reported, or "no reply".
	Seen string `json:"seen"`
	// Expected is the client's address as the baseline saw it, or "no reply" where the Service must
	// not answer (policy Local, no backend on the node).
	Expected string `json:"expected"`
	// Result of the row.
	Result Result `json:"result"`
	// Detail explains a failure.
	Detail string `json:"detail,omitempty"`
}

// NoReply is Row.Seen and Row.Expected when nothing answered.
const NoReply = "no reply"

// Report is the outcome of one validation.
type Report struct {
	// Cluster is the cluster's name.
	Cluster string `json:"cluster"`
	// Checks are the cluster checks, then the baseline and probe setup checks.
	Checks []Check `json:"checks"`
	// Matrix is the source-IP proof; empty when the cluster checks failed.
	Matrix []Row `json:"matrix"`
	// Passed is true when every check and every row passed.
	Passed bool `json:"passed"`
}

// Finish sets Passed from the checks and rows; a report with neither does not pass.
func (r *Report) Finish() {
	r.Passed = len(r.Checks)+len(r.Matrix) > 0
	for _, c := range r.Checks {
		if c.Result == Fail || c.Result == Skip {
			r.Passed = false
		}
	}
	for _, row := range r.Matrix {
		if row.Result != Pass {
			r.Passed = false
		}
	}
}

// Failures counts the failed checks and rows.
func (r *Report) Failures() int {
	n := 0
	for _, c := range r.Checks {
		if c.Result == Fail {
			n++
		}
	}
	for _, row := range r.Matrix {
		if row.Result != Pass {
			n++
		}
	}
	return n
}

// WriteTable prints the checks and the matrix as aligned tables.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tTARGET\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Target, c.Result, oneLine(c.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Matrix) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tBACKEND\tPOLICY\tPROTO\tSEEN\tEXPECTED\tRESULT\tDETAIL")
		for _, row := range r.Matrix {
			backend := row.Backend
			if row.Backend == "remote" {
				backend += " (" + row.BackendNode + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Node, backend, row.Policy, row.Protocol, row.Seen, row.Expected, row.Result, oneLine(row.Detail))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	verdict := "PASSED"
	if !r.Passed {
		verdict = fmt.Sprintf("FAILED (%d failures)", r.Failures())
	}
	_, err := fmt.Fprintf(w, "\nCluster %q validation %s\n", r.Cluster, verdict)
	return err
}

// WriteJSON prints the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
