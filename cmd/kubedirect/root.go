package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/providers"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/spf13/cobra"
)

// globals are the flags every command shares and what is built from them.
type globals struct {
	quiet      bool
	verbose    bool
	stateStore string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.verbose:
		level = slog.LevelDebug
	case g.quiet:
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

func (g *globals) printer() *progress.Printer { return progress.New(g.stdout, g.quiet) }

func (g *globals) env(p *progress.Printer) providers.Env {
	return providers.Env{Log: g.logger(), Printer: p, StateStore: g.stateStore}
}

// provider builds the provider a spec names.
func (g *globals) provider(c *spec.Cluster, p *progress.Printer) (provision.Provider, error) {
	return providers.For(c, g.env(p))
}

// find looks a cluster up by name in every configured provider.
func (g *globals) find(ctx context.Context, name string, p *progress.Printer) (provision.Provider, *spec.Cluster, error) {
	return providers.Find(ctx, name, g.env(p))
}

func newRootCommand() *cobra.Command {
	return newRootCommandIO(os.Stdin, os.Stdout, os.Stderr)
}

// newRootCommandIO builds the command tree on the given streams, so tests can run it in process.
func newRootCommandIO(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "kubedirect",
		Short: "Kubernetes clusters whose Services see their clients' real IP addresses",
		Long: `kubedirect creates Kubernetes clusters (on kind or AWS) with kube-proxy replaced by an eBPF
dataplane that keeps the client's source IP on NodePort traffic, and proves it end to end.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print only errors")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "print details")
	root.PersistentFlags().StringVar(&g.stateStore, "state-store", "", "s3://bucket[/prefix] where clusters looked up by name keep their state (default $KUBEDIRECT_STATE_STORE)")
	root.MarkFlagsMutuallyExclusive("quiet", "verbose")
	root.AddCommand(
		newCreateCommand(g),
		newDeleteCommand(g),
		newGetCommand(g),
		newExportCommand(g),
		newVersionCommand(g),
		newEchoCommand(g), newCNICommand(g), newAgentCommand(g), newLabCommand(g), newNodeCommand(g),
		newValidateCommand(g),
		newStatusCommand(g), newInspectCommand(g), newVerifyCommand(g),
		newMonitorCommand(g),
		newTraceCommand(g),
	)
	return root
}
