// Package agentstatus is the agent's /status document, shared by the agent that serves it and by the
// validation (provision/validate) that reads it, so neither keeps a copy of the other's fields.
package agentstatus

import "time"

// Path is where the agent serves the document on its health address.
const Path = "/status"

// Status is the agent's /status document.
type Status struct {
	// Node is this agent's node; Ready is true once the first full sync programmed the maps.
	Node  string `json:"node"`
	Ready bool   `json:"ready"`
	// Services, Frontends and Backends count what is programmed (backends: TableAll slots).
	Services  int `json:"services"`
	Frontends int `json:"frontends"`
	Backends  int `json:"backends"`
	// Tunnels are remote pod CIDRs, Endpoints local pods, Conntrack live entries at the last GC.
	Tunnels   int `json:"tunnels"`
	Endpoints int `json:"endpoints"`
	Conntrack int `json:"conntrack"`
	// Skipped lists the Services the dataplane cannot serve, with the reason.
	Skipped []string `json:"skipped,omitempty"`
	// Syncs counts Service syncs; MapWrites counts service and backend map writes and deletes since start.
	Syncs     int `json:"syncs"`
	MapWrites int `json:"mapWrites"`
	// SyncErrors counts failed Service programming attempts.
	SyncErrors int `json:"syncErrors"`
	// LastSync is when a Service was last programmed (or skipped); LastSyncError the last failure.
	LastSync      time.Time `json:"lastSync,omitzero"`
	LastSyncError string    `json:"lastSyncError,omitempty"`
	// NodeIP is this node's InternalIP and PodCIDR its pod range, once known.
	NodeIP  string `json:"nodeIP,omitempty"`
	PodCIDR string `json:"podCIDR,omitempty"`
	// Netdevs maps the NICs the NodePort programs are attached to to how NodePort traffic is handled
	// there: "xdp" (xdp_netdev in the driver, tc behind it) or "tc" (xdp off, or no native XDP).
	Netdevs map[string]string `json:"netdevs,omitempty"`
}
