// Package install puts kubedirect's dataplane into a cluster: it builds an OCI image of the running
// kubedirect binary (the self-image) and loads it into kind's nodes, so nothing is pulled from a
// registry, and installs or upgrades the embedded Helm chart with the Helm SDK, then waits for the agent
// DaemonSet to be ready on every node.
package install

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/kubedirect/kubedirect/manifests"
	"github.com/kubedirect/kubedirect/provision/spec"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// Release and namespace the CLI installs the chart as.
const (
	ReleaseName = "kubedirect"
	Namespace   = "kube-system"
)

// SelfImageRepository is the repository of the image the CLI builds of itself.
const SelfImageRepository = "kubedirect.local/kubedirect"

// DefaultAPIServerPort is the API server's port on kind and kubeadm clusters.
const DefaultAPIServerPort = 6443

// LoadChart loads the chart embedded in package manifests.
func LoadChart() (*chart.Chart, error) { return loadChart(manifests.Chart()) }

// LoadCloudControllerChart loads the AWS cloud controller manager's chart embedded in package
// manifests.
func LoadCloudControllerChart() (*chart.Chart, error) {
	return loadChart(manifests.CloudControllerChart())
}

// loadChart loads the chart whose files root holds.
func loadChart(root fs.FS) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(root, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(root, path)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: path, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load embedded chart: %w", err)
	}
	return ch, nil
}

// Image is the kubedirect image the chart runs.
type Image struct {
	// Repository and Tag name the image.
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	// PullPolicy is Never for the self-image (loaded into the nodes) and IfNotPresent otherwise.
	PullPolicy string `json:"pullPolicy"`
}

// Ref is the image reference repository:tag.
func (i Image) Ref() string { return i.Repository + ":" + i.Tag }

// PublishedImage is the image named by spec.dataplane.image.
func PublishedImage(ref string) Image {
	repo, tag := ref, "latest"
	if at := strings.LastIndex(ref, "@"); at >= 0 {
		// A digest reference: the chart joins repository and tag with ':', so keep it whole.
		return Image{Repository: ref[:at], Tag: "latest@" + ref[at+1:], PullPolicy: "IfNotPresent"}
	}
	if c := strings.LastIndex(ref, ":"); c > strings.LastIndex(ref, "/") {
		repo, tag = ref[:c], ref[c+1:]
	}
	return Image{Repository: repo, Tag: tag, PullPolicy: "IfNotPresent"}
}

// ValuesOptions are the parts of the chart's values that do not come from the spec.
type ValuesOptions struct {
	// Image the agent runs.
	Image Image
	// APIServerHost and APIServerPort are the API server address the agents connect to.
	APIServerHost string
	APIServerPort int
}

// Values returns the chart values for the cluster spec c (defaulted), as Helm takes them: see
// ChartValuesFor.
func Values(c *spec.Cluster, o ValuesOptions) (map[string]any, error) {
	return ChartValuesFor(c, o).Map()
}

// APIServerHostFromKubeconfigServer returns the host of a kubeconfig server URL such as
// https://demo-control-plane:6443, and its port (DefaultAPIServerPort when absent).
func APIServerHostFromKubeconfigServer(server string) (string, int, error) {
	return SplitServerURL(server, DefaultAPIServerPort)
}

// SplitServerURL returns the host and port of an API server URL such as https://10.0.0.5:6443, and
// defaultPort when the URL names none (a load balancer's https://name is on 443).
func SplitServerURL(server string, defaultPort int) (string, int, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return "", 0, fmt.Errorf("parse API server address %q: not a URL", server)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Host, defaultPort, nil
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("parse API server address %q: port: %w", server, err)
	}
	return host, port, nil
}

// Render renders the chart with values for the given spec, as `helm template` would, and returns the
// manifests in a stable order, each preceded by a "# Source:" comment.
func Render(c *spec.Cluster, o ValuesOptions) (string, error) {
	ch, err := LoadChart()
	if err != nil {
		return "", err
	}
	vals, err := Values(c, o)
	if err != nil {
		return "", err
	}
	return RenderChart(ch, vals)
}

// RenderChart renders ch with vals as release ReleaseName in Namespace.
func RenderChart(ch *chart.Chart, vals map[string]any) (string, error) {
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: ReleaseName, Namespace: Namespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return "", fmt.Errorf("chart values: %w", err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return "", fmt.Errorf("render chart: %w", err)
	}
	names := make([]string, 0, len(out))
	for name, body := range out {
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(body) == "" {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(out[name]))
	}
	return b.String(), nil
}
