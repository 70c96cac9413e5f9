package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A second `lab up` (or a second test process) with the name of a lab whose processes still run must
// not take that lab down: it would kill another run's agents mid-test. Only a lab whose processes are
// all gone is a leftover to remove.
func TestUpRefusesALabWhoseProcessesRun(t *testing.T) {
	runRoot := t.TempDir()
	const name = "kdbusy"
	sleeper := exec.Command("sleep", "60")
	sleeper.Env = append(os.Environ(), "KUBEDIRECT_LAB="+name)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	dir := stateDir(runRoot, name)
	st := State{Name: name, Dir: dir, Pids: map[string]int{"agent-node-1": sleeper.Process.Pid}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	l, err := Up(context.Background(), Options{Name: name, RunRoot: runRoot, Binary: "/bin/true"})
	if err == nil {
		_ = l.Down(context.Background())
		t.Fatal("Up took over a lab whose agent runs")
	}
	for _, want := range []string{"lab " + name, "agent-node-1", strconv.Itoa(sleeper.Process.Pid), "lab down"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if !ours(sleeper.Process.Pid, name) { // a killed child is a zombie: no environment left
		t.Error("the running lab's process was stopped")
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Errorf("the running lab's state was removed: %v", err)
	}
}

// stopPid ends a lab process with SIGTERM, and one that ignores SIGTERM with SIGKILL after the timeout;
// it returns only when the process is gone.
func TestStopPidEndsTheProcess(t *testing.T) {
	const name = "kdstop"
	for _, script := range []string{"echo ready; exec sleep 60", `trap "" TERM; echo ready; while :; do sleep 0.05; done`} {
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "KUBEDIRECT_LAB="+name)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// the shell has set its trap when it says ready
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			t.Fatalf("%q: read %q, %v", script, line, err)
		}
		go func() { _ = cmd.Wait() }() // reap, as startProc does
		stopPid(cmd.Process.Pid, name, 300*time.Millisecond)
		if ours(cmd.Process.Pid, name) {
			t.Errorf("%q still runs after stopPid", script)
			_ = cmd.Process.Kill()
		}
	}
}
