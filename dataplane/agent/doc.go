// Package agent is kubedirect's node agent: it watches Services, EndpointSlices and Nodes, translates
// them into the dataplane's desired state (Translate, pure and unit tested), programs the pinned BPF maps
// incrementally (Programmer), keeps the overlay and the pod endpoints up to date, collects conntrack
// garbage and serves /healthz, /readyz, /metrics and /status.
package agent
