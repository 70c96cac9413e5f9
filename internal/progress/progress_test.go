package progress

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by one second on every reading.
func fakeClock() func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func TestStepsArePlainLinesOffTerminal(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, false)
	p.now = fakeClock()
	_ = p.Step("Preparing nodes", func() error { return nil })
	_ = p.Step("Installing dataplane", func() error { return errors.New("boom") })
	want := " • Preparing nodes ...\n ✓ Preparing nodes (1s)\n • Installing dataplane ...\n ✗ Installing dataplane (1s)\n"
	if out.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", out.String(), want)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("escape sequences written to a non-terminal")
	}
}

func TestQuietPrintsOnlyFailures(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, true)
	p.now = fakeClock()
	_ = p.Step("ok step", func() error { return nil })
	p.Println("chatter")
	_ = p.Step("bad step", func() error { return errors.New("x") })
	if got := out.String(); got != " ✗ bad step (1s)\n" {
		t.Errorf("quiet output %q", got)
	}
}

func TestKindLoggerTurnsKindStatusIntoSteps(t *testing.T) {
	var out, logs bytes.Buffer
	p := New(&out, false)
	p.now = fakeClock()
	kl := p.KindLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	kl.V(0).Infof(" • %s  ...\n", "Preparing nodes 📦")
	kl.V(0).Infof(" ✓ %s\n", "Preparing nodes 📦")
	kl.V(0).Infof(" • %s  ...\n", "Starting control-plane 🕹️")
	kl.V(0).Infof(" ✗ %s\n", "Starting control-plane 🕹️")
	kl.V(1).Info("detail from kind")
	kl.Warn("a warning")
	want := " • Preparing nodes 📦 ...\n ✓ Preparing nodes 📦 (1s)\n • Starting control-plane 🕹️ ...\n ✗ Starting control-plane 🕹️ (1s)\n"
	if out.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", out.String(), want)
	}
	if !strings.Contains(logs.String(), "detail from kind") || !strings.Contains(logs.String(), "a warning") {
		t.Errorf("kind's details and warnings not logged: %s", logs.String())
	}
}

func TestStartEndsARunningStep(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, false)
	p.now = fakeClock()
	p.Start("one")
	p.Start("two")
	p.End(true)
	p.End(true) // no running step: nothing printed
	if n := strings.Count(out.String(), "✓"); n != 2 {
		t.Errorf("got %d ticks:\n%s", n, out.String())
	}
}
