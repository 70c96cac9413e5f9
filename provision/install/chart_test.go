package install

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/manifests"
	"github.com/kubedirect/kubedirect/provision/spec"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current chart")

// goldenValues are the install values of the golden files: a fixed self-image and API server.
var goldenValues = ValuesOptions{
	Image:         Image{Repository: SelfImageRepository, Tag: "bin-0123456789abcdef", PullPolicy: "Never"},
	APIServerHost: "172.18.0.2",
	APIServerPort: 6443,
}

func loadExample(t *testing.T, name string) *spec.Cluster {
	t.Helper()
	c, err := spec.LoadFile(filepath.Join("..", "..", "examples", name), nil)
	if err != nil {
		t.Fatalf("load example %s: %v", name, err)
	}
	return c
}

// TestRenderGolden compares the chart rendered for each kind example with testdata/<example>.golden;
// run with -update to accept a change.
func TestRenderGolden(t *testing.T) {
	for _, example := range []string{"kind.yaml", "kind-dsr.yaml"} {
		t.Run(example, func(t *testing.T) {
			got, err := Render(loadExample(t, example), goldenValues)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(example, ".yaml")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("rendered chart differs from %s (run go test ./provision/install -update and review the diff):\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return ""
}

// objects splits a rendered stream into its documents, keyed by kind.
func objects(t *testing.T, rendered string) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, doc := range strings.Split(rendered, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := sigsyaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if meta.Kind != "" {
			out[meta.Kind] = append(out[meta.Kind], []byte(doc))
		}
	}
	return out
}

func renderKind(t *testing.T, o ValuesOptions) map[string][][]byte {
	t.Helper()
	got, err := Render(loadExample(t, "kind.yaml"), o)
	if err != nil {
		t.Fatal(err)
	}
	return objects(t, got)
}

// TestRBACLeastPrivilege fails on any wildcard in the ClusterRole and pins its exact rules.
func TestRBACLeastPrivilege(t *testing.T) {
	objs := renderKind(t, goldenValues)
	if len(objs["ClusterRole"]) != 1 || len(objs["Role"]) != 0 {
		t.Fatalf("want exactly one ClusterRole and no Role, got %d and %d", len(objs["ClusterRole"]), len(objs["Role"]))
	}
	var role rbacv1.ClusterRole
	if err := sigsyaml.UnmarshalStrict(objs["ClusterRole"][0], &role); err != nil {
		t.Fatal(err)
	}
	if err := noWildcards(role.Rules); err != "" {
		t.Fatal(err)
	}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	if len(role.Rules) != len(want) {
		t.Fatalf("ClusterRole has %d rules, want %d: %+v", len(role.Rules), len(want), role.Rules)
	}
	for i, r := range role.Rules {
		w := want[i]
		if !slices.Equal(r.APIGroups, w.APIGroups) || !slices.Equal(r.Resources, w.Resources) || !slices.Equal(r.Verbs, w.Verbs) ||
			len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("rule %d = %+v, want %+v", i, r, w)
		}
	}
	var binding rbacv1.ClusterRoleBinding
	if err := sigsyaml.UnmarshalStrict(objs["ClusterRoleBinding"][0], &binding); err != nil {
		t.Fatal(err)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
		binding.Subjects[0].Name != "kubedirect" || binding.Subjects[0].Namespace != Namespace {
		t.Errorf("binding %+v does not bind the role to the agent's ServiceAccount only", binding)
	}
}

// noWildcards returns a description of the first "*" in rules, or "".
func noWildcards(rules []rbacv1.PolicyRule) string {
	for i, r := range rules {
		for field, vals := range map[string][]string{"verbs": r.Verbs, "resources": r.Resources, "apiGroups": r.APIGroups, "nonResourceURLs": r.NonResourceURLs} {
			for _, v := range vals {
				if strings.Contains(v, "*") {
					return fmt.Sprintf("rule %d has a wildcard in %s: %q", i, field, v)
				}
			}
		}
	}
	return ""
}

func TestNoWildcardsDetects(t *testing.T) {
	for _, r := range []rbacv1.PolicyRule{
		{APIGroups: []string{"*"}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/*"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"*"}},
	} {
		if noWildcards([]rbacv1.PolicyRule{r}) == "" {
			t.Errorf("wildcard in %+v not detected", r)
		}
	}
}

// TestDaemonSet checks what the agent needs to run with no kube-proxy and no CNI yet.
func TestDaemonSet(t *testing.T) {
	objs := renderKind(t, goldenValues)
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(objs["DaemonSet"][0], &ds); err != nil {
		t.Fatal(err)
	}
	p := ds.Spec.Template.Spec
	if !p.HostNetwork || p.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %s", p.HostNetwork, p.DNSPolicy)
	}
	if len(p.Tolerations) != 1 || p.Tolerations[0].Operator != corev1.TolerationOpExists || p.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v do not tolerate every taint (control plane, not-ready)", p.Tolerations)
	}
	if len(p.InitContainers) != 1 || !slices.Equal(p.InitContainers[0].Command,
		[]string{BinaryPath, "cni", "install", "--bin-dir", "/host/opt/cni/bin", "--conf-dir", "/host/etc/cni/net.d", "--data-dir", "/run/kubedirect"}) {
		t.Errorf("init container %+v", p.InitContainers)
	}
	if len(p.Containers) != 1 {
		t.Fatalf("containers %d", len(p.Containers))
	}
	a := p.Containers[0]
	if a.Image != "kubedirect.local/kubedirect:bin-0123456789abcdef" || a.ImagePullPolicy != corev1.PullNever || p.InitContainers[0].ImagePullPolicy != corev1.PullNever {
		t.Errorf("image %s pull %s", a.Image, a.ImagePullPolicy)
	}
	if !slices.Equal(a.Command, []string{BinaryPath, "agent", "--config", config.DefaultPath, "--node-name", "$(NODE_NAME)"}) {
		t.Errorf("agent command %v", a.Command)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range a.Env {
		env[e.Name] = e
	}
	if env["KUBERNETES_SERVICE_HOST"].Value != "172.18.0.2" || env["KUBERNETES_SERVICE_PORT"].Value != "6443" {
		t.Errorf("api server env %+v", env)
	}
	if f := env["NODE_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME not from the downward API: %+v", env["NODE_NAME"])
	}
	if a.ReadinessProbe == nil || a.ReadinessProbe.HTTPGet.Path != "/readyz" || a.ReadinessProbe.HTTPGet.Port.IntValue() != 9890 ||
		a.LivenessProbe == nil || a.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes %+v %+v", a.ReadinessProbe, a.LivenessProbe)
	}
	hostPaths := map[string]string{}
	for _, v := range p.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for name, path := range map[string]string{"bpffs": "/sys/fs/bpf", "cni-bin": "/opt/cni/bin", "cni-conf": "/etc/cni/net.d", "cni-data": "/run/kubedirect"} {
		if hostPaths[name] != path {
			t.Errorf("host path %s = %q, want %q", name, hostPaths[name], path)
		}
	}
}

// TestConfigMapIsAgentConfig decodes the ConfigMap's config.yaml with the agent's own strict loader.
func TestConfigMapIsAgentConfig(t *testing.T) {
	c := loadExample(t, "kind-dsr.yaml")
	c.Spec.Dataplane.LogLevel = "debug"
	c.Spec.Dataplane.MapSizes.Conntrack = 1024
	c.Spec.Dataplane.XDP = spec.XDPNative
	got, err := Render(c, goldenValues)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(t, objects(t, got))
	sizes := config.DefaultMapSizes()
	sizes.Conntrack = 1024
	want := config.Config{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16", Encapsulation: "vxlan", VXLANPort: 8472,
		ExternalServiceMode: "dsr", NodePortRange: "30000-32767", LogLevel: "debug", XDP: spec.XDPNative,
		MapSizes:   sizes,
		HealthAddr: ":9890", ProxyHealthAddr: ":10256", BPFFSPath: "/sys/fs/bpf/kubedirect", CNIDataDir: "/run/kubedirect",
		NonMasqueradeCIDRs: []string{"10.244.0.0/16"}, EventSample: config.DefaultEventSample, FlowHistory: config.DefaultFlowHistory}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("agent config\n got %+v\nwant %+v", *cfg, want)
	}
}

// agentConfig loads the rendered ConfigMap's config.yaml with the agent's own strict loader.
func agentConfig(t *testing.T, objs map[string][][]byte) *config.Config {
	t.Helper()
	var cm corev1.ConfigMap
	if err := sigsyaml.UnmarshalStrict(objs["ConfigMap"][0], &cm); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("agent cannot load the chart's config: %v", err)
	}
	return cfg
}

// TestAPIServerHostRequired: a hand install without apiServer.host fails with a clear message.
func TestAPIServerHostRequired(t *testing.T) {
	_, err := Render(loadExample(t, "kind.yaml"), ValuesOptions{Image: goldenValues.Image})
	if err == nil || !strings.Contains(err.Error(), "apiServer.host is required") {
		t.Fatalf("err = %v", err)
	}
}

// TestChartDefaultsRender renders the chart with only apiServer.host set, as `helm install --set` would.
func TestChartDefaultsRender(t *testing.T) {
	ch, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderChart(ch, map[string]any{"apiServer": map[string]any{"host": "10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "image: kubedirect.local/kubedirect:0.1.0") {
		t.Errorf("default image not the chart's appVersion:\n%s", out)
	}
}

// TestValuesDocumented requires a comment above every key of values.yaml, at every level.
func TestValuesDocumented(t *testing.T) {
	data, err := readChartFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(path+"."+k.Value, ".")
			if strings.TrimSpace(k.HeadComment) == "" {
				t.Errorf("values.yaml: %s has no comment", p)
			}
			walk(v, p)
		}
	}
	walk(root.Content[0], "")
	// The CLI's values must only name keys values.yaml documents.
	var documented map[string]any
	if err := yaml.Unmarshal(data, &documented); err != nil {
		t.Fatal(err)
	}
	vals, err := Values(loadExample(t, "kind.yaml"), goldenValues)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, vals, documented, "")
}

// TestValuesYAMLIsDefaultChartValues: a hand install (helm install with values.yaml) runs the agent
// with the same configuration as the Go defaults the CLI starts from; every key of values.yaml is a
// field of ChartValues.
func TestValuesYAMLIsDefaultChartValues(t *testing.T) {
	data, err := readChartFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got ChartValues
	if err := sigsyaml.UnmarshalStrict(data, &got); err != nil {
		t.Fatalf("values.yaml does not decode into ChartValues: %v", err)
	}
	if want := DefaultChartValues(); !reflect.DeepEqual(got, want) {
		t.Errorf("values.yaml differs from DefaultChartValues():\n got %+v\nwant %+v", got, want)
	}
}

func checkKeys(t *testing.T, got, documented map[string]any, path string) {
	for k, v := range got {
		d, ok := documented[k]
		if !ok {
			t.Errorf("install.Values sets %s%s, which values.yaml does not have", path, k)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			dsub, _ := d.(map[string]any)
			checkKeys(t, sub, dsub, path+k+".")
		}
	}
}

func readChartFile(name string) ([]byte, error) {
	var buf bytes.Buffer
	f, err := manifests.Chart().Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}

func TestPublishedImage(t *testing.T) {
	for ref, want := range map[string]Image{
		"ghcr.io/kubedirect/kubedirect:v0.1.0": {Repository: "ghcr.io/kubedirect/kubedirect", Tag: "v0.1.0", PullPolicy: "IfNotPresent"},
		"localhost:5000/kubedirect":            {Repository: "localhost:5000/kubedirect", Tag: "latest", PullPolicy: "IfNotPresent"},
	} {
		if got := PublishedImage(ref); got != want {
			t.Errorf("PublishedImage(%q) = %+v, want %+v", ref, got, want)
		}
	}
}

func TestAPIServerHostFromKubeconfigServer(t *testing.T) {
	host, port, err := APIServerHostFromKubeconfigServer("https://demo-control-plane:6443")
	if err != nil || host != "demo-control-plane" || port != 6443 {
		t.Errorf("got %q %d %v", host, port, err)
	}
}

// TestAgentPodsCarryScrapeAnnotations: a Prometheus with the usual kubernetes-pods job scrapes the
// agents' /metrics on the health port without further setup.
func TestAgentPodsCarryScrapeAnnotations(t *testing.T) {
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(renderKind(t, goldenValues)["DaemonSet"][0], &ds); err != nil {
		t.Fatal(err)
	}
	ann := ds.Spec.Template.Annotations
	for k, want := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9890", "prometheus.io/path": "/metrics"} {
		if ann[k] != want {
			t.Errorf("pod annotation %s = %q, want %q", k, ann[k], want)
		}
	}
}

// renderValues renders the chart with the kind example's values changed by edit.
func renderValues(t *testing.T, edit func(*ChartValues)) map[string][][]byte {
	t.Helper()
	v := ChartValuesFor(loadExample(t, "kind.yaml"), goldenValues)
	edit(&v)
	m, err := v.Map()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderChart(ch, m)
	if err != nil {
		t.Fatal(err)
	}
	return objects(t, out)
}

// TestServiceMonitorOnlyWhenEnabled: by default nothing needs the Prometheus Operator's CRDs; turned on,
// the ServiceMonitor selects a Service whose endpoints are the agent pods' health port.
func TestServiceMonitorOnlyWhenEnabled(t *testing.T) {
	off := renderValues(t, func(*ChartValues) {})
	if len(off["ServiceMonitor"]) != 0 || len(off["Service"]) != 0 {
		t.Errorf("default render has %d ServiceMonitors and %d Services, want none", len(off["ServiceMonitor"]), len(off["Service"]))
	}
	on := renderValues(t, func(v *ChartValues) {
		v.Metrics.ServiceMonitor.Enabled = true
		v.Metrics.ServiceMonitor.Interval = "15s"
		v.Metrics.ServiceMonitor.Labels = map[string]string{"release": "prom"}
	})
	if len(on["ServiceMonitor"]) != 1 || len(on["Service"]) != 1 {
		t.Fatalf("enabled render has %d ServiceMonitors and %d Services, want one each", len(on["ServiceMonitor"]), len(on["Service"]))
	}
	var sm struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Endpoints []struct {
				Port, Path, Interval string
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := sigsyaml.Unmarshal(on["ServiceMonitor"][0], &sm); err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := sigsyaml.UnmarshalStrict(on["Service"][0], &svc); err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(on["DaemonSet"][0], &ds); err != nil {
		t.Fatal(err)
	}
	if sm.Metadata.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack the configured release=prom", sm.Metadata.Labels)
	}
	if !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v)", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{svc.Namespace}) {
		t.Errorf("ServiceMonitor namespaces %v, Service in %q", sm.Spec.NamespaceSelector.MatchNames, svc.Namespace)
	}
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, ds.Spec.Template.Labels) || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service selector %v (clusterIP %q) does not select the agent pods %v headlessly", svc.Spec.Selector, svc.Spec.ClusterIP, ds.Spec.Template.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Interval != "15s" {
		t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}
	var target string
	for _, p := range svc.Spec.Ports {
		if p.Name == sm.Spec.Endpoints[0].Port {
			target = p.TargetPort.String()
		}
	}
	var port int32
	for _, p := range ds.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == target {
			port = p.ContainerPort
		}
	}
	if port != 9890 {
		t.Errorf("ServiceMonitor port %q reaches container port %d, want the health port 9890", sm.Spec.Endpoints[0].Port, port)
	}
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
