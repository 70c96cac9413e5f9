package lab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/lab"
)

// TestRootLabScaleEveryNodeProgramsEveryChange is the small scale run: 5 nodes, 500 Services of 5
// endpoints, a burst of 100 changes (ports and endpoints). Every agent must count every change in its
// change-to-programmed histogram, and every node's pinned maps must then equal the desired state from
// the API server: an agent that misses a change fails the run.
func TestRootLabScaleEveryNodeProgramsEveryChange(t *testing.T) {
	const nodes, services, changes = 5, 500, 100
	o := lab.ScaleOptions{Lab: lab.Options{Nodes: nodes}, Services: services, EndpointsPerService: 5, Changes: changes, Timeout: 5 * time.Minute}
	labOptions(t, &o.Lab)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := lab.Scale(ctx, o)
	if res != nil {
		t.Logf("scale run:\n%s", res.Table())
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified != nodes || len(res.Differences) > 0 {
		t.Errorf("%d of %d nodes equal the desired state after the burst; differences:\n%s", res.Verified, nodes, strings.Join(res.Differences, "\n"))
	}
	if got := res.ChangeToProgrammed.Count; got != nodes*changes {
		t.Errorf("agents observed %d changes programmed, want %d (each of %d nodes every change once)", got, nodes*changes, nodes)
	}
}
