package main

import (
	"context"
	"time"

	"github.com/kubedirect/kubedirect/provision/spec"
)

// validateKind validates a kind cluster, retrying for up to wait. (Filled in by the validate command.)
func validateKind(_ context.Context, _ *globals, _ *spec.Cluster, _ time.Duration, _ string) error {
	return nil
}
