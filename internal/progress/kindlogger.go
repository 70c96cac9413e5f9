package progress

import (
	"fmt"
	"log/slog"
	"strings"

	kindlog "sigs.k8s.io/kind/pkg/log"
)

// KindLogger adapts kind's logger so that kind's own steps ("Preparing nodes", "Starting
// control-plane", ...) appear as steps of this printer, and its other messages go to log.
func (p *Printer) KindLogger(log *slog.Logger) kindlog.Logger {
	return kindLogger{p: p, log: log}
}

type kindLogger struct {
	p   *Printer
	log *slog.Logger
}

func (k kindLogger) Warn(msg string)                          { k.log.Warn(strings.TrimSpace(msg)) }
func (k kindLogger) Warnf(f string, a ...any)                 { k.Warn(fmt.Sprintf(f, a...)) }
func (k kindLogger) Error(msg string)                         { k.log.Error(strings.TrimSpace(msg)) }
func (k kindLogger) Errorf(f string, a ...any)                { k.Error(fmt.Sprintf(f, a...)) }
func (k kindLogger) V(level kindlog.Level) kindlog.InfoLogger { return kindInfo{k: k, level: level} }

type kindInfo struct {
	k     kindLogger
	level kindlog.Level
}

func (i kindInfo) Enabled() bool { return true }

func (i kindInfo) Infof(f string, a ...any) { i.Info(fmt.Sprintf(f, a...)) }

// Info turns kind's status lines into steps: " • NAME  ..." starts one, " ✓ NAME" and " ✗ NAME"
// end it. Everything else is detail for the log.
func (i kindInfo) Info(msg string) {
	line := strings.TrimSpace(msg)
	switch {
	case i.level == 0 && strings.HasPrefix(line, "• ") && strings.HasSuffix(line, "..."):
		i.k.p.Start(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "• "), "...")))
	case i.level == 0 && strings.HasPrefix(line, "✓ "):
		i.k.p.End(true)
	case i.level == 0 && strings.HasPrefix(line, "✗ "):
		i.k.p.End(false)
	case line != "":
		i.k.log.Debug(line, "source", "kind", "v", int(i.level))
	}
}
