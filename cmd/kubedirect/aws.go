package main

import (
	"context"
	"fmt"

	"github.com/kubedirect/kubedirect/provision/spec"
)

// planAWS prints the AWS resources create would make or change.
func planAWS(_ context.Context, _ *globals, c *spec.Cluster) error {
	return fmt.Errorf("plan cluster %q: the aws provider is not built yet", c.Metadata.Name)
}

// createAWS creates or resumes the cluster on AWS.
func createAWS(_ context.Context, _ *globals, c *spec.Cluster, _ *createOptions) error {
	return fmt.Errorf("create cluster %q: the aws provider is not built yet", c.Metadata.Name)
}

// deleteAWS removes every resource tagged with the cluster's name.
func deleteAWS(_ context.Context, _ *globals, c *spec.Cluster) error {
	return fmt.Errorf("delete cluster %q: the aws provider is not built yet", c.Metadata.Name)
}
