package maps_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// cOnly marks an enumerator with no Go mirror on purpose.
const cOnly = ^uint64(0)

// goMirrors maps every enumerator of bpf/lib/common.h to the Go constant that mirrors it.
var goMirrors = map[string]uint64{
	"KD_SCOPE_CLUSTER":  uint64(maps.ScopeCluster),
	"KD_SCOPE_EXTERNAL": uint64(maps.ScopeExternal),

	"KD_SVC_ETP_LOCAL": uint64(maps.SvcExternalLocal),
	"KD_SVC_ITP_LOCAL": uint64(maps.SvcInternalLocal),
	"KD_SVC_AFFINITY":  uint64(maps.SvcAffinity),
	"KD_SVC_DSR":       uint64(maps.SvcDSR),
	"KD_SVC_TUNNEL":    uint64(maps.SvcTunnel),
	"KD_SVC_REJECT":    uint64(maps.SvcReject),

	"KD_BE_LOCAL":       uint64(maps.BackendLocal),
	"KD_BE_REMOTE":      uint64(maps.BackendRemote),
	"KD_BE_HOSTNET":     uint64(maps.BackendHostNet),
	"KD_BE_TABLE_ALL":   uint64(maps.TableAll),
	"KD_BE_TABLE_LOCAL": uint64(maps.TableLocal),

	"KD_CT_FWD":             uint64(maps.CTForward),
	"KD_CT_REPLY":           uint64(maps.CTReply),
	"KD_CT_CLUSTER":         uint64(maps.CTCluster),
	"KD_CT_NODEPORT_LOCAL":  uint64(maps.CTNodePortLocal),
	"KD_CT_NODEPORT_REMOTE": uint64(maps.CTNodePortRemote),
	"KD_CT_NODEPORT_FWD":    uint64(maps.CTNodePortFwd),
	"KD_CT_DSR":             uint64(maps.CTDSR),
	"KD_CT_HAIRPIN":         uint64(maps.CTHairpin),
	"KD_CT_HOSTNET":         uint64(maps.CTHostNet),
	"KD_CT_NEW":             uint64(maps.CTNew),

	"KD_TCP_SYN":         uint64(maps.TCPSyn),
	"KD_TCP_ESTABLISHED": uint64(maps.TCPEstablished),
	"KD_TCP_CLOSING":     uint64(maps.TCPClosing),
	"KD_TCP_FIN_CLIENT":  uint64(maps.TCPFinClient),
	"KD_TCP_FIN_BACKEND": uint64(maps.TCPFinBackend),
	"KD_TCP_SEEN_REPLY":  uint64(maps.TCPSeenReply),

	"KD_CT_SYN_TIMEOUT":      uint64(maps.CTSynTimeout / time.Second),
	"KD_CT_TCP_TIMEOUT":      uint64(maps.CTTCPTimeout / time.Second),
	"KD_CT_CLOSE_TIMEOUT":    uint64(maps.CTCloseTimeout / time.Second),
	"KD_CT_FIN_WAIT_TIMEOUT": uint64(maps.CTFinWaitTimeout / time.Second),
	"KD_CT_UDP_TIMEOUT":      uint64(maps.CTUDPTimeout / time.Second),
	"KD_FRAG_TIMEOUT":        uint64(maps.FragTimeout / time.Second),

	"KD_MODE_TUNNEL": uint64(maps.ModeTunnel),
	"KD_MODE_DSR":    uint64(maps.ModeDSR),
	"KD_DEBUG_TRACE": uint64(maps.DebugTrace),

	"KD_M_PASS":           maps.MetricPass,
	"KD_M_DNAT":           maps.MetricDNAT,
	"KD_M_REVNAT":         maps.MetricRevNAT,
	"KD_M_LOCAL":          maps.MetricLocal,
	"KD_M_ENCAP":          maps.MetricEncap,
	"KD_M_FIB_OUT":        maps.MetricFIBOut,
	"KD_M_REJECT":         maps.MetricReject,
	"KD_M_DROP":           maps.MetricDrop,
	"KD_M_VERDICT_MAX":    cOnly,
	"KD_M_CT_NEW_ADDED":   maps.MetricCTNewAdded,
	"KD_M_CT_NEW_REMOVED": maps.MetricCTNewRemoved,
	"KD_M_CT_ADDED":       maps.MetricCTAdded,
	"KD_M_CT_REMOVED":     maps.MetricCTRemoved,
	"KD_M_EVENT_LOST":     maps.MetricEventLost,
	"KD_M_MAX":            maps.MetricSlots,

	"KD_DROP_MALFORMED":        maps.DropMalformed,
	"KD_DROP_NO_BACKEND":       maps.DropNoBackend,
	"KD_DROP_NO_LOCAL_BACKEND": maps.DropNoLocalBackend,
	"KD_DROP_NO_TUNNEL":        maps.DropNoTunnel,
	"KD_DROP_FIB":              maps.DropFIB,
	"KD_DROP_REWRITE":          maps.DropRewrite,
	"KD_DROP_CT_FULL":          maps.DropCTFull,
	"KD_DROP_FRAGMENT":         maps.DropFragment,
	"KD_DROP_CT_COLLISION":     maps.DropCTCollision,
	"KD_DROP_TOO_BIG":          maps.DropTooBig,

	"KD_PROG_FROM_CONTAINER": uint64(maps.ProgFromContainer),
	"KD_PROG_TO_CONTAINER":   uint64(maps.ProgToContainer),
	"KD_PROG_FROM_NETDEV":    uint64(maps.ProgFromNetdev),
	"KD_PROG_TO_NETDEV":      uint64(maps.ProgToNetdev),
	"KD_PROG_FROM_OVERLAY":   uint64(maps.ProgFromOverlay),
	"KD_PROG_TO_OVERLAY":     uint64(maps.ProgToOverlay),
	"KD_PROG_SOCK":           uint64(maps.ProgSock),

	"KD_SOCK_FWD": uint64(maps.SockForward),
	"KD_SOCK_REV": uint64(maps.SockReverse),

	"KD_FRAG_ROUTE": uint64(maps.FragRoute),
	"KD_FRAG_ENCAP": uint64(maps.FragEncap),
	"KD_FRAG_FIB":   uint64(maps.FragFIB),
}

// TestConstantsMatchC compares every enumerator of the kd_* enums in the
// compiled BTF (bpf/kd_types.c anchors them all) with its Go constant: a
// value changed on one side, an enumerator added in C without a Go mirror, or
// a mirror whose enumerator is gone fails here instead of in the datapath.
func TestConstantsMatchC(t *testing.T) {
	spec, err := bpf.LoadTypes()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for typ, err := range spec.Types.All() {
		if err != nil {
			t.Fatal(err)
		}
		e, ok := typ.(*btf.Enum)
		if !ok || !strings.HasPrefix(e.Name, "kd_") {
			continue
		}
		for _, v := range e.Values {
			seen[v.Name] = true
			want, ok := goMirrors[v.Name]
			switch {
			case !ok:
				t.Errorf("enum %s: %s = %d has no Go mirror in dataplane/maps (add it to goMirrors)", e.Name, v.Name, v.Value)
			case want != cOnly && want != v.Value:
				t.Errorf("enum %s: %s is %d in C, %d in Go", e.Name, v.Name, v.Value, want)
			}
		}
	}
	for name := range goMirrors {
		if !seen[name] {
			t.Errorf("%s has a Go mirror but no enumerator in bpf/lib/common.h's BTF (kd_types.c)", name)
		}
	}
}
