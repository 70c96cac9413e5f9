package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/kubedirect/kubedirect/provision/validate"
)

// fakeRunner returns canned validation outcomes, one per attempt (the last repeats).
type fakeRunner struct {
	reports []*validate.Report
	errs    []error
	waited  time.Duration
}

func (f *fakeRunner) RunWithWait(_ context.Context, wait, _ time.Duration, onRetry func(*validate.Report, error)) (*validate.Report, error) {
	f.waited = wait
	for i := range f.reports {
		if f.reports[i] != nil && f.reports[i].Passed || i == len(f.reports)-1 || wait == 0 {
			return f.reports[i], f.errs[i]
		}
		onRetry(f.reports[i], f.errs[i])
	}
	return nil, errors.New("no outcome")
}

func report(passed bool) *validate.Report {
	r := &validate.Report{Cluster: "demo", Checks: []validate.Check{{Name: "node ready", Target: "demo-worker", Result: validate.Pass}},
		Matrix: []validate.Row{{Node: "demo-worker", NodeIP: "172.18.0.3", Backend: validate.Remote, BackendNode: "demo-worker2",
			Policy: "Cluster", Protocol: "TCP", Seen: "172.18.0.1", Expected: "172.18.0.1", Result: validate.Pass}}}
	if !passed {
		r.Matrix[0].Seen, r.Matrix[0].Result, r.Matrix[0].Detail = "172.18.0.3", validate.Fail, "source NATed to node demo-worker's address"
	}
	r.Finish()
	return r
}

func withRunner(t *testing.T, r *fakeRunner) {
	t.Helper()
	old := validatorFor
	validatorFor = func(context.Context, *globals, *spec.Cluster) (validationRunner, error) { return r, nil }
	t.Cleanup(func() { validatorFor = old })
}

// TestValidateExitCodes: 0 when everything passes, 2 when a check fails, 1 when validation cannot run.
func TestValidateExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		runner *fakeRunner
		code   int
		out    string
		stderr string
	}{
		{"pass", &fakeRunner{reports: []*validate.Report{report(true)}, errs: []error{nil}}, 0, "validation PASSED", ""},
		{"check fails", &fakeRunner{reports: []*validate.Report{report(false)}, errs: []error{nil}}, 2, "source NATed", "1 checks failed"},
		{"cannot run", &fakeRunner{reports: []*validate.Report{nil}, errs: []error{errors.New("list nodes: connection refused")}}, 1, "", "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withRunner(t, tc.runner)
			code, out, stderr := run(t, "", "validate", "cluster", "--name", "demo")
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, stderr)
			}
		})
	}
}

// TestValidateWaitRetries: --wait passes the duration on and a later passing attempt exits 0.
func TestValidateWaitRetries(t *testing.T) {
	r := &fakeRunner{reports: []*validate.Report{report(false), report(true)}, errs: []error{nil, nil}}
	withRunner(t, r)
	code, out, stderr := run(t, "", "validate", "cluster", "--name", "demo", "--wait", "2m")
	if code != 0 || r.waited != 2*time.Minute || !strings.Contains(stderr, "retrying") || !strings.Contains(out, "PASSED") {
		t.Errorf("exit %d waited %s\nstdout:\n%s\nstderr:\n%s", code, r.waited, out, stderr)
	}
}

func TestValidateJSON(t *testing.T) {
	withRunner(t, &fakeRunner{reports: []*validate.Report{report(false)}, errs: []error{nil}})
	code, out, _ := run(t, "", "validate", "cluster", "-f", example("kind.yaml"), "-o", "json")
	var rep validate.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out)
	}
	if code != 2 || rep.Passed || len(rep.Matrix) != 1 || rep.Matrix[0].Result != validate.Fail {
		t.Errorf("exit %d report %+v", code, rep)
	}
}

func TestValidateFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"validate", "cluster"},
		{"validate", "cluster", "--name", "demo", "-f", example("kind.yaml")},
		{"validate", "cluster", "--name", "demo", "-o", "yaml"},
	} {
		if code, _, _ := run(t, "", args...); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}

// TestCreateDryRunPrintsChart: --dry-run ends with the chart's manifests for the spec.
func TestCreateDryRunPrintsChart(t *testing.T) {
	code, out, stderr := run(t, "", "create", "cluster", "-f", example("kind-dsr.yaml"), "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	testutil.WantContains(t, "dry-run output", out,
		"kind: DaemonSet", "kind: ClusterRole", `externalServiceMode: "dsr"`,
		`value: "demo-dsr-control-plane"`, "image: kubedirect.local/kubedirect:bin-",
	)
}
