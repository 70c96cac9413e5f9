// Package progress prints the CLI's user-facing steps the way kind does: a bullet while a step runs,
// then a tick or a cross with the time it took. On a terminal the running line is redrawn in place;
// elsewhere every event is a plain line.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Printer prints steps. The zero value is not usable; use New.
type Printer struct {
	mu      sync.Mutex
	out     io.Writer
	tty     bool
	quiet   bool
	now     func() time.Time
	current string
	started time.Time
}

// New returns a printer writing to out; quiet suppresses everything but failures.
func New(out io.Writer, quiet bool) *Printer {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &Printer{out: out, tty: tty, quiet: quiet, now: time.Now}
}

// Start begins a step; a step still running is ended as successful first.
func (p *Printer) Start(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != "" {
		p.endLocked(true)
	}
	p.current, p.started = name, p.now()
	if !p.quiet {
		fmt.Fprintf(p.out, " • %s ...", name)
		if !p.tty {
			fmt.Fprintln(p.out)
		}
	}
}

// End finishes the running step with a tick, or a cross when ok is false. Without a running step it
// does nothing.
func (p *Printer) End(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked(ok)
}

func (p *Printer) endLocked(ok bool) {
	if p.current == "" {
		return
	}
	mark := "✓"
	if !ok {
		mark = "✗"
	}
	took := p.now().Sub(p.started).Round(100 * time.Millisecond)
	if !p.quiet || !ok {
		if p.tty && !p.quiet {
			fmt.Fprint(p.out, "\r\x1b[2K")
		}
		fmt.Fprintf(p.out, " %s %s (%s)\n", mark, p.current, took)
	}
	p.current = ""
}

// Step runs fn as one step and ends it with its outcome.
func (p *Printer) Step(name string, fn func() error) error {
	p.Start(name)
	err := fn()
	p.End(err == nil)
	return err
}

// Println prints a plain line (not in quiet mode), ending the running step's line on a terminal first.
func (p *Printer) Println(a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	if p.tty && p.current != "" {
		fmt.Fprintln(p.out)
	}
	fmt.Fprintln(p.out, strings.TrimRight(fmt.Sprint(a...), "\n"))
}
