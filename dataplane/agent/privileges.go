package agent

import (
	"os"
	"path/filepath"
)

// Capabilities are the Linux capabilities the agent needs on a node, and all it needs: the chart's
// agent container drops ALL others and adds exactly these (provision/install's chart test compares), and
// the lab test TestRootLabAgentLeastPrivilege proves each is needed (README "Privileges" says for what).
var Capabilities = []string{"BPF", "NET_ADMIN", "PERFMON"}

// hostProcSys is where the chart mounts the node's /proc/sys/net (as /host/proc/sys/net): a container
// that is not privileged gets /proc/sys read-only, so the agent writes the node's network sysctls there.
const hostProcSys = "/host/proc/sys"

// procSys is the sysctl tree the agent writes: hostProcSys when the chart mounted it, else /proc/sys (a
// process on the node itself, as in the lab). Network sysctls are those of the writer's network
// namespace, the node's in both cases (host network).
var procSys = func() string {
	if _, err := os.Stat(filepath.Join(hostProcSys, "net")); err == nil {
		return hostProcSys
	}
	return "/proc/sys"
}()
