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
func CloudControllerChart() fs.FS { return mustSub(cloudControllerFS, CloudControllerChartDir) }

// mustSub is dir of an embedded file system; dir is a constant its embed directive guarantees.
func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
