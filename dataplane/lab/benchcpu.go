package lab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cpuMeter adds up the CPU time (user + system) of the processes that carry a benchmark's
// connections: this process (the Go probes' client) and its waited children (wrk), the backend's
// process tree (nginx) and the kernel's softirq threads. On the lab's veth paths the datapath's
// packet work runs as softirq in the context of the process that sent the packet (or in ksoftirqd
// when it falls behind), so this sum is the CPU a connection costs end to end, every system's
// datapath included; unlike the rate, it does not depend on how much of a shared machine the run got.
type cpuMeter struct {
	backend int // pid of the backend's main process, 0 if none
}

// total is the meter's CPU time so far.
func (m cpuMeter) total() time.Duration {
	var d time.Duration
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			d += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if m.backend > 0 {
		d += procTreeCPU(m.backend)
	}
	softirqd, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range softirqd {
		if b, err := os.ReadFile(c); err == nil && strings.HasPrefix(string(b), "ksoftirqd/") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c))); err == nil {
				d += cpuSeconds(procCPU(pid))
			}
		}
	}
	return d
}

// procTreeCPU is the CPU time of pid and its descendants (nginx's master and workers).
func procTreeCPU(pid int) time.Duration {
	d := cpuSeconds(procCPU(pid))
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return d
	}
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			d += procTreeCPU(c)
		}
	}
	return d
}

// cpuSeconds converts procCPU's seconds.
func cpuSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
