package manifests

import (
	"embed"
	"io/fs"
)

// CloudControllerChartDir is the directory of the AWS cloud controller manager's chart.
const CloudControllerChartDir = "charts/aws-cloud-controller-manager"

//go:embed all:charts/aws-cloud-controller-manager
var cloudControllerFS embed.FS

// CloudControllerChart returns the chart of the AWS cloud controller manager, which create installs on
// AWS clusters, rooted at its directory.
func CloudControllerChart() fs.FS {
	sub, err := fs.Sub(cloudControllerFS, CloudControllerChartDir)
	if err != nil {
		panic(err) // the path is a constant that the embed directive above guarantees
	}
	return sub
}
