// Package testutil holds helpers shared by tests.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips the test unless it runs as root. Tests that need root or the kernel (BPF, network
// namespaces, Docker) are named TestRoot... and call this first; CI runs them as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF, network namespaces); run the tests as root")
	}
}
