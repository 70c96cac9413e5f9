package inspect

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// FullThreshold is the fill (entries / capacity) from which a map counts as nearly full: status reports
// it as a problem (new Services or flows are refused once a map is full).
const FullThreshold = 0.9

// StatusRow is one node of `kubedirect status -o json`.
type StatusRow struct {
	Node    string `json:"node"`
	Version string `json:"version,omitempty"`
	Ready   bool   `json:"ready"`
	// Attach says how the programs are attached, by kind of interface ("netdev eth0 tcx", ...).
	Attach []string `json:"attach"`
	// Services and Skipped count the Services programmed and those the agent cannot serve (with reason).
	Services int      `json:"services"`
	Skipped  []string `json:"skipped,omitempty"`
	// Maps are the maps' fill against their capacity.
	Maps []MapFill `json:"maps"`
	// LastSync is when a Service was last programmed; SyncErrors counts failures since start.
	LastSync      time.Time `json:"lastSync,omitzero"`
	SyncErrors    int       `json:"syncErrors"`
	LastSyncError string    `json:"lastSyncError,omitempty"`
	// Drops count dropped packets by reason since the maps were created (only reasons seen).
	Drops map[string]uint64 `json:"drops,omitempty"`
	// Problems say what is unhealthy (empty when healthy).
	Problems []string `json:"problems,omitempty"`
}

// StatusRows summarizes each node's dump; nodeErrors (by node) become rows with only a problem.
func StatusRows(dumps []*Dump, nodeErrors map[string]error) []StatusRow {
	var out []StatusRow
	for _, d := range dumps {
		r := StatusRow{Node: d.Node, Version: d.Version, Maps: d.Maps, Attach: attachSummary(d), Drops: map[string]uint64{}}
		for reason, n := range d.Drops {
			if n > 0 {
				r.Drops[reason] = n
			}
		}
		if st := d.Status; st != nil {
			r.Ready, r.Services, r.Skipped = st.Ready, st.Services, st.Skipped
			r.LastSync, r.SyncErrors, r.LastSyncError = st.LastSync, st.SyncErrors, st.LastSyncError
			if !st.Ready {
				r.Problems = append(r.Problems, "agent not ready (initial sync not done)")
			}
		} else {
			r.Problems = append(r.Problems, "agent status unreadable: "+d.StatusError)
		}
		for _, s := range r.Skipped {
			r.Problems = append(r.Problems, "Service skipped: "+s)
		}
		for _, m := range d.Maps {
			if m.Capacity > 0 && float64(m.Entries) >= FullThreshold*float64(m.Capacity) {
				r.Problems = append(r.Problems, fmt.Sprintf("map %s %d of %d entries", m.Name, m.Entries, m.Capacity))
			}
		}
		if !slices.ContainsFunc(d.Attachments, func(a Attachment) bool { return a.Kind == "netdev" || a.Kind == "" }) {
			r.Problems = append(r.Problems, "no program attached to the node's NIC")
		}
		out = append(out, r)
	}
	for _, n := range slices.Sorted(maps.Keys(nodeErrors)) {
		out = append(out, StatusRow{Node: n, Problems: []string{nodeErrors[n].Error()}})
	}
	return out
}

// attachSummary lists the NIC and overlay attachments by interface and mode, and counts the pods'.
func attachSummary(d *Dump) []string {
	seen := map[string]bool{}
	pods := map[string]int{}
	var out []string
	for _, a := range d.Attachments {
		switch a.Kind {
		case "container":
			if a.Hook == "ingress" {
				pods[a.Mode]++
			}
		case "cgroup":
		default:
			s := strings.TrimSpace(a.Kind+" "+a.Interface) + " " + a.Mode
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	for _, mode := range slices.Sorted(maps.Keys(pods)) {
		out = append(out, fmt.Sprintf("%d pods %s", pods[mode], mode))
	}
	return out
}

// Healthy reports whether no row has a problem.
func Healthy(rows []StatusRow) bool {
	return !slices.ContainsFunc(rows, func(r StatusRow) bool { return len(r.Problems) > 0 })
}

func fill(ms []MapFill, name string) string {
	for _, m := range ms {
		if m.Name == name {
			return fmt.Sprintf("%d/%d", m.Entries, m.Capacity)
		}
	}
	return "-"
}

// WriteStatus prints one line per node, then each node's problems.
func WriteStatus(w io.Writer, rows []StatusRow, now time.Time) error {
	err := writeTable(w, "NODE\tVERSION\tREADY\tATTACH\tSERVICES\tSKIPPED\tFRONTENDS\tBACKENDS\tCONNTRACK\tAFFINITY\tLAST SYNC\tSYNC ERRORS\tDROPS",
		cells(rows, func(r StatusRow) []any {
			last := "-"
			if !r.LastSync.IsZero() {
				last = now.Sub(r.LastSync).Round(time.Second).String() + " ago"
			}
			var drops []string
			for _, reason := range slices.Sorted(maps.Keys(r.Drops)) {
				drops = append(drops, fmt.Sprintf("%s=%d", reason, r.Drops[reason]))
			}
			return []any{r.Node, orDash(r.Version), r.Ready, orDash(strings.Join(r.Attach, ", ")), r.Services, len(r.Skipped),
				fill(r.Maps, "kd_services"), fill(r.Maps, "kd_backends"), fill(r.Maps, "kd_conntrack"), fill(r.Maps, "kd_affinity"),
				last, r.SyncErrors, orDash(strings.Join(drops, " "))}
		}))
	if err != nil {
		return err
	}
	for _, r := range rows {
		for _, p := range r.Problems {
			if _, err := fmt.Fprintf(w, "%s: %s\n", r.Node, p); err != nil {
				return err
			}
		}
	}
	return nil
}
