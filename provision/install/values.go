package install

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/provision/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ChartValues are the chart's values, typed. manifests/charts/kubedirect/values.yaml holds
// DefaultChartValues (TestValuesYAMLIsDefaultChartValues keeps them equal) with a comment for each key.
type ChartValues struct {
	// Image is the kubedirect image the agent and its init container run.
	Image Image `json:"image"`
	// APIServer is the address the agent connects to directly (there is no kube-proxy).
	APIServer APIServer `json:"apiServer"`
	// Config becomes the agent's configuration file (ConfigMap <release>-config).
	Config config.Config `json:"config"`
	// HealthPort serves /healthz, /readyz, /metrics and /status; ProxyHealthPort serves kube-proxy's
	// node health endpoint (0 turns it off).
	HealthPort      int `json:"healthPort"`
	ProxyHealthPort int `json:"proxyHealthPort"`
	// CNI is where the init container installs the plugin and its conflist.
	CNI CNIPaths `json:"cni"`
	// HostPaths are other node directories the agent mounts.
	HostPaths HostPaths `json:"hostPaths"`
	// Resources of the agent container.
	Resources corev1.ResourceRequirements `json:"resources"`
	// PriorityClassName, Tolerations, NodeSelector, UpdateStrategy and PodAnnotations shape the
	// DaemonSet and its pods.
	PriorityClassName string                         `json:"priorityClassName"`
	Tolerations       []corev1.Toleration            `json:"tolerations"`
	NodeSelector      map[string]string              `json:"nodeSelector"`
	UpdateStrategy    appsv1.DaemonSetUpdateStrategy `json:"updateStrategy"`
	PodAnnotations    map[string]string              `json:"podAnnotations"`
	// ServiceAccount names the agent's ServiceAccount (default: the release's full name).
	ServiceAccount ServiceAccount `json:"serviceAccount"`
	// Metrics is how Prometheus finds the agents' /metrics.
	Metrics Metrics `json:"metrics"`
	// FullnameOverride names every object of the release (default: the release name).
	FullnameOverride string `json:"fullnameOverride"`
}

// APIServer is the API server address the agents connect to.
type APIServer struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// CNIPaths are the node's CNI directories.
type CNIPaths struct {
	BinDir  string `json:"binDir"`
	ConfDir string `json:"confDir"`
}

// HostPaths are the node's BPF and cgroup filesystems.
type HostPaths struct {
	BPFFS  string `json:"bpffs"`
	Cgroup string `json:"cgroup"`
}

// Metrics is how Prometheus finds the agents' /metrics (served on HealthPort).
type Metrics struct {
	// ScrapeAnnotations puts prometheus.io/scrape, port and path on the agent's pods.
	ScrapeAnnotations bool `json:"scrapeAnnotations"`
	// ServiceMonitor renders a headless Service of the agents and a Prometheus Operator ServiceMonitor.
	ServiceMonitor ServiceMonitor `json:"serviceMonitor"`
}

// ServiceMonitor configures the optional Prometheus Operator ServiceMonitor.
type ServiceMonitor struct {
	Enabled  bool              `json:"enabled"`
	Interval string            `json:"interval"`
	Labels   map[string]string `json:"labels"`
}

// ServiceAccount names the agent's ServiceAccount.
type ServiceAccount struct {
	Name string `json:"name"`
}

// DefaultChartValues are the chart's defaults: the agent configuration of a defaulted empty spec and
// the agent's default ports.
func DefaultChartValues() ChartValues {
	var c spec.Cluster
	c.SetDefaults()
	cfg := config.FromSpec(&c)
	cfg.NonMasqueradeCIDRs = []string{} // empty: the agent uses [podCIDR]
	maxUnavailable := intstr.FromInt32(1)
	return ChartValues{
		Image:           Image{Repository: SelfImageRepository, PullPolicy: string(corev1.PullIfNotPresent)},
		APIServer:       APIServer{Port: DefaultAPIServerPort},
		Config:          cfg,
		HealthPort:      mustPort(config.DefaultHealthAddr),
		ProxyHealthPort: mustPort(config.DefaultProxyHealthAddr),
		CNI:             CNIPaths{BinDir: "/opt/cni/bin", ConfDir: "/etc/cni/net.d"},
		HostPaths:       HostPaths{BPFFS: "/sys/fs/bpf", Cgroup: "/sys/fs/cgroup"},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		}},
		PriorityClassName: "system-node-critical",
		Tolerations:       []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		NodeSelector:      map[string]string{corev1.LabelOSStable: "linux"},
		UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
			Type:          appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable},
		},
		PodAnnotations: map[string]string{},
		Metrics: Metrics{ScrapeAnnotations: true,
			ServiceMonitor: ServiceMonitor{Interval: "30s", Labels: map[string]string{}}},
	}
}

// mustPort is the port of a default ":PORT" address.
func mustPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		panic(fmt.Sprintf("default address %q has no port", addr))
	}
	return n
}

// ChartValuesFor are the chart values for the cluster spec c (defaulted): its networking and dataplane
// sections become the agent's configuration (config.FromSpec), o the image and API server.
func ChartValuesFor(c *spec.Cluster, o ValuesOptions) ChartValues {
	v := DefaultChartValues()
	v.Image = o.Image
	v.APIServer.Host = o.APIServerHost
	if o.APIServerPort != 0 {
		v.APIServer.Port = o.APIServerPort
	}
	v.Config = config.FromSpec(c)
	return v
}

// Map is v as Helm takes values: the JSON object of the struct.
func (v ChartValues) Map() (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode chart values: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode chart values: %w", err)
	}
	return m, nil
}
