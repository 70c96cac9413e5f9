package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// localReservedPortsPath is the sysctl net.ipv4.ip_local_reserved_ports of the agent's network
// namespace (the node's: the agent runs on the host network).
var localReservedPortsPath = filepath.Join(procSys, "net/ipv4/ip_local_reserved_ports")

type portRange struct{ first, last int }

// parsePortRanges reads the sysctl's format: "8472,30000-32767" (empty: none).
func parsePortRanges(s string) ([]portRange, error) {
	var out []portRange
	for _, f := range strings.Split(strings.TrimSpace(s), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("parse port range %q: %w", f, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("parse port range %q: %w", f, err)
			}
		}
		if a < 1 || b > 65535 || a > b {
			return nil, fmt.Errorf("parse port range %q: out of order or bounds", f)
		}
		out = append(out, portRange{a, b})
	}
	return out, nil
}

// mergePortRanges sorts the ranges and joins overlapping and adjacent ones, in the sysctl's format.
func mergePortRanges(rs []portRange) string {
	sort.Slice(rs, func(i, j int) bool { return rs[i].first < rs[j].first })
	var merged []portRange
	for _, r := range rs {
		if n := len(merged); n > 0 && r.first <= merged[n-1].last+1 {
			merged[n-1].last = max(merged[n-1].last, r.last)
			continue
		}
		merged = append(merged, r)
	}
	parts := make([]string, len(merged))
	for i, r := range merged {
		parts[i] = strconv.Itoa(r.first)
		if r.last != r.first {
			parts[i] += "-" + strconv.Itoa(r.last)
		}
	}
	return strings.Join(parts, ",")
}

// ReservePorts adds the NodePort range ("FIRST-LAST") to the reserved local ports at path (the sysctl
// net.ipv4.ip_local_reserved_ports), keeping what is there: the kernel then never hands a port of the
// range to a host process as its ephemeral source port, whose replies the NodePort programs would
// otherwise take for NodePort traffic (Cilium does the same).
func ReservePorts(path, nodePortRange string) error {
	want, err := parsePortRanges(nodePortRange)
	if err != nil || len(want) != 1 {
		return fmt.Errorf("reserve ports: NodePort range %q: want FIRST-LAST (%v)", nodePortRange, err)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reserve ports: %w", err)
	}
	have, err := parsePortRanges(string(cur))
	if err != nil {
		return fmt.Errorf("reserve ports: %s: %w", path, err)
	}
	before := mergePortRanges(append([]portRange(nil), have...))
	merged := mergePortRanges(append(have, want...))
	if merged == before {
		return nil
	}
	if err := os.WriteFile(path, []byte(merged+"\n"), 0o644); err != nil {
		return fmt.Errorf("reserve ports: write %s: %w", path, err)
	}
	return nil
}
