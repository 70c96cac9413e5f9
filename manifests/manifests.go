// Package manifests embeds what kubedirect applies to clusters: the Helm chart of the node agent
// (charts/kubedirect), the templates of the workload `validate cluster` uses to prove source
// addresses (probe/) and the Grafana dashboard of the agents' metrics (dashboards/).
package manifests

import (
	"embed"
	"io/fs"
)

// ChartDir is the chart's directory inside Chart.
const ChartDir = "charts/kubedirect"

//go:embed all:charts/kubedirect
var chartFS embed.FS

//go:embed probe/*.yaml
var probeFS embed.FS

//go:embed dashboards/kubedirect.json
var dashboard []byte

// Chart returns the kubedirect chart's files, rooted at the chart's directory (Chart.yaml at the top).
func Chart() fs.FS {
	sub, err := fs.Sub(chartFS, ChartDir)
	if err != nil {
		panic(err) // the path is a constant that the embed directive above guarantees
	}
	return sub
}

// Probe returns the probe workload templates (Go text/template YAML), rooted at probe/.
func Probe() fs.FS {
	sub, err := fs.Sub(probeFS, "probe")
	if err != nil {
		panic(err)
	}
	return sub
}

// Dashboard returns the Grafana dashboard (JSON) of the agents' /metrics; import it in Grafana or have
// `kubedirect export dashboard` write it.
func Dashboard() []byte { return dashboard }
