package inspect

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
)

// TestStatusUnhealthyNodesAreNamedWithTheReason: a node whose agent is not ready, one with a nearly full
// conntrack map and one that could not be reached make status unhealthy, each with its reason; a
// healthy node prints its attach mode and drops.
func TestStatusUnhealthyNodesAreNamedWithTheReason(t *testing.T) {
	now := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	netdev := []Attachment{{Kind: "netdev", Interface: "eth0", Hook: "ingress", Mode: "tcx"},
		{Kind: "container", Interface: "veth1", Hook: "ingress", Mode: "tcx"}}
	good := &Dump{Node: "good", Version: "v1", Attachments: netdev, Drops: map[string]uint64{"no_local_backend": 3, "fib": 0},
		Status: &agentstatus.Status{Ready: true, Services: 4, LastSync: now.Add(-90 * time.Second)},
		Maps:   []MapFill{{Name: "kd_conntrack", Entries: 10, Capacity: 100}}}
	starting := &Dump{Node: "starting", Attachments: netdev, Status: &agentstatus.Status{}}
	full := &Dump{Node: "full", Attachments: netdev, Status: &agentstatus.Status{Ready: true},
		Maps: []MapFill{{Name: "kd_conntrack", Entries: 95, Capacity: 100}}}
	rows := StatusRows([]*Dump{good, starting, full}, map[string]error{"gone": errors.New("node gone: no running kubedirect agent pod")})
	if Healthy(rows) {
		t.Fatal("status healthy with a starting agent, a full map and an unreachable node")
	}
	if !Healthy(rows[:1]) {
		t.Errorf("the good node alone is unhealthy: %v", rows[0].Problems)
	}
	var out bytes.Buffer
	if err := WriteStatus(&out, rows, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"netdev eth0 tcx, 1 pods tcx", "1m30s ago", "no_local_backend=3",
		"starting: agent not ready", "full: map kd_conntrack 95 of 100 entries", "gone: node gone: no running kubedirect agent pod"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
