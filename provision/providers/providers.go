// Package providers is the one place that knows every provision.Provider: it builds the provider a
// spec names, and all of them for commands that look a cluster up by name. Adding a provider means a
// case here and a value of spec.Provider; the CLI does not change.
package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision"
	awsprov "github.com/kubedirect/kubedirect/provision/aws"
	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// Env is what providers are built from.
type Env struct {
	// Log receives details. Default: discarded.
	Log *slog.Logger
	// Printer shows progress; kind's own status lines become its steps. Default: none.
	Printer *progress.Printer
	// StateStore (s3://bucket[/prefix]) is where the AWS provider lists and looks up clusters by name.
	// Default: $KUBEDIRECT_STATE_STORE.
	StateStore string
}

func (e Env) withDefaults() Env {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.StateStore == "" {
		e.StateStore = os.Getenv(awsprov.StateStoreEnv)
	}
	return e
}

// Names are the providers in the order lookups by name try them.
var Names = []spec.Provider{spec.ProviderKind, spec.ProviderAWS}

// New builds the provider named name.
func New(name spec.Provider, env Env) (provision.Provider, error) {
	env = env.withDefaults()
	switch name {
	case spec.ProviderKind:
		opts := []kind.Option{kind.WithDebugLogger(env.Log)}
		if env.Printer != nil {
			opts = append(opts, kind.WithLogger(env.Printer.KindLogger(env.Log)))
		}
		return kind.NewProvider(opts...), nil
	case spec.ProviderAWS:
		return awsprov.NewProvider(awsprov.WithLogger(env.Log)).AsProvisionProvider(env.StateStore), nil
	default:
		return nil, fmt.Errorf("provider %q: unknown (known: %v)", name, Names)
	}
}

// For builds the provider of a spec.
func For(c *spec.Cluster, env Env) (provision.Provider, error) { return New(c.Spec.Provider, env) }

// Configured are the providers a lookup by name can ask: kind always, AWS when a state store is given.
func Configured(env Env) ([]provision.Provider, error) {
	env = env.withDefaults()
	var out []provision.Provider
	for _, n := range Names {
		if n == spec.ProviderAWS && env.StateStore == "" {
			continue
		}
		p, err := New(n, env)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Find looks the named cluster up in every configured provider and returns the provider holding it and
// the cluster's spec. A provider that cannot be asked (no Docker daemon, no AWS credentials) does not
// hide a cluster another one has; when none has it the error wraps provision.ErrNotFound and names
// what could not be asked.
func Find(ctx context.Context, name string, env Env) (provision.Provider, *spec.Cluster, error) {
	ps, err := Configured(env)
	if err != nil {
		return nil, nil, err
	}
	var problems []error
	for _, p := range ps {
		c, err := p.Get(ctx, name)
		if err == nil {
			return p, c, nil
		}
		if !errors.Is(err, provision.ErrNotFound) {
			problems = append(problems, fmt.Errorf("%s: %w", p.Name(), err))
		}
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("find cluster %q: %w", name, errors.Join(problems...))
	}
	where := "kind"
	if env.withDefaults().StateStore == "" {
		where += " (for an aws cluster give --state-store or $" + awsprov.StateStoreEnv + ")"
	} else {
		where += " or the state store " + env.withDefaults().StateStore
	}
	return nil, nil, fmt.Errorf("cluster %q is not on %s: %w", name, where, provision.ErrNotFound)
}
