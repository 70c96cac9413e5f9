package lab

import (
	"os"
	"testing"
)

// The bench's agent table says what its memory figure is: resident anonymous and file pages, which add
// up to the resident total, and the peak.
func TestProcMemorySplitsResidentIntoAnonAndFile(t *testing.T) {
	m := procMemory(os.Getpid())
	if m.AnonBytes <= 0 || m.FileBytes <= 0 || m.RSSBytes < m.AnonBytes+m.FileBytes || m.PeakRSSBytes < m.RSSBytes {
		t.Fatalf("memory of this process %+v: want anon > 0, file > 0, rss >= anon + file, hwm >= rss", m)
	}
}
