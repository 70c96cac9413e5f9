package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/internal/testutil"
)

// run executes the CLI in process and returns its exit code, standard output and standard error.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommandIO(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	code := exitCode(&errOut, root.ExecuteContext(context.Background()))
	return code, out.String(), errOut.String()
}

func example(name string) string { return filepath.Join("..", "..", "examples", name) }

// noDocker points the kind library at a socket that does not exist, so any attempt to create
// something fails loudly instead of touching a real daemon.
func noDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "absent.sock"))
}

func TestCreateDryRunPrintsKindConfig(t *testing.T) {
	noDocker(t)
	code, out, stderr := run(t, "", "create", "cluster", "-f", example("kind.yaml"), "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	testutil.WantContains(t, "dry-run output", out, "kubeProxyMode: none", "disableDefaultCNI: true", "podSubnet: 10.244.0.0/16", "serviceSubnet: 10.96.0.0/16", "name: demo")
	if n := strings.Count(out, "\n  role: "); n != 3 {
		t.Errorf("dry-run output has %d nodes, want 3:\n%s", n, out)
	}
}

func TestCreateDryRunFromStdin(t *testing.T) {
	noDocker(t)
	spec := "apiVersion: kubedirect.io/v1alpha1\nkind: Cluster\nmetadata: {name: piped}\nspec: {provider: kind}\n"
	code, out, stderr := run(t, spec, "create", "cluster", "-f", "-", "--dry-run")
	if code != 0 || !strings.Contains(out, "name: piped") {
		t.Fatalf("exit %d, out:\n%s\nstderr:\n%s", code, out, stderr)
	}
}

func TestCreateRejectsBadSpecs(t *testing.T) {
	noDocker(t)
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"invalid-unknown-field.yaml", []string{`spec.networking.podCidr: unknown field (line 12), did you mean "podCIDR"?`, "spec.nodeGroups[0].size: unknown field"}},
		{"invalid-bad-cidr.yaml", []string{`spec.networking.podCIDR: Invalid value: "10.0.0/8"`}},
		{"invalid-overlap.yaml", []string{`spec.networking.serviceCIDR: Invalid value: "10.96.0.0/16": overlaps podCIDR 10.0.0.0/8`}},
		{"invalid-enums.yaml", []string{`spec.networking.externalServiceMode: Unsupported value: "direct"`, `spec.provider: Unsupported value: "gke"`}},
	} {
		for _, dry := range []bool{true, false} {
			args := []string{"create", "cluster", "-f", filepath.Join("..", "..", "provision", "spec", "testdata", tc.file)}
			if dry {
				args = append(args, "--dry-run")
			}
			code, out, stderr := run(t, "", args...)
			if code != 1 {
				t.Errorf("%s (dry-run %v): exit %d, want 1", tc.file, dry, code)
			}
			if out != "" {
				t.Errorf("%s: printed to stdout although the spec is invalid:\n%s", tc.file, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("%s: stderr lacks %q:\n%s", tc.file, w, stderr)
				}
			}
			// The spec is rejected before anything talks to Docker: no Docker error may appear.
			if strings.Contains(stderr, "Docker") || strings.Contains(stderr, "docker") {
				t.Errorf("%s: the CLI reached for Docker with an invalid spec:\n%s", tc.file, stderr)
			}
		}
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "cluster"}, `required flag(s) "file" not set`},
		{[]string{"create", "cluster", "-f", "/nonexistent/spec.yaml"}, "read cluster spec: open /nonexistent/spec.yaml"},
		{[]string{"delete", "cluster"}, "at least one of the flags in the group [name file] is required"},
		{[]string{"delete", "cluster", "--name", "a", "-f", "b"}, "none of the others can be"},
		{[]string{"get", "clusters", "-o", "xml"}, `flag --output: unsupported value "xml"`},
		{[]string{"-q", "-v", "version"}, "[quiet verbose] were all set"},
	} {
		code, _, stderr := run(t, "", tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	code, out, _ := run(t, "", "version", "-o", "json")
	var v versionInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || v.GoVersion == "" {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestCompletion(t *testing.T) {
	code, out, _ := run(t, "", "completion", "bash")
	if code != 0 || !strings.Contains(out, "__start_kubedirect") {
		t.Fatalf("exit %d, completion script missing", code)
	}
}

func TestExitCodeOfCheckFailure(t *testing.T) {
	var buf bytes.Buffer
	if got := exitCode(&buf, &exitError{code: 2, err: context.Canceled}); got != 2 || !strings.Contains(buf.String(), "ERROR: context canceled") {
		t.Fatalf("exitCode = %d, printed %q", got, buf.String())
	}
}

// TestExportDashboardPrintsGrafanaJSON: the dashboard a user imports into Grafana is the embedded one.
func TestExportDashboardPrintsGrafanaJSON(t *testing.T) {
	code, out, stderr := run(t, "", "export", "dashboard")
	var d struct {
		Title  string `json:"title"`
		Panels []any  `json:"panels"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Title != "kubedirect" || len(d.Panels) == 0 {
		t.Fatalf("exit %d, title %q, %d panels, stderr:\n%s", code, d.Title, len(d.Panels), stderr)
	}
}
