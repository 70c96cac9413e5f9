package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Field is one key property of a resource: what the plan prints and what compare checks. A task may
// give several fields the same name (a set, such as the rules of a security group).
type Field struct {
	Name  string
	Value string
	// Immutable fields cannot change in place: a change is refused, the resource needs replacing.
	Immutable bool
}

// Change is a field whose values in the cloud differ from the desired ones.
type Change struct {
	Field     string
	Old, New  []string
	Immutable bool
}

// String is the change as the plan prints it: "field: old -> new" for a single value, and for a set
// one line per value removed ("field: - value") or added ("field: + value").
func (c Change) String() string {
	if len(c.Old) <= 1 && len(c.New) <= 1 {
		return fmt.Sprintf("%s: %s -> %s", c.Field, orNone(c.Old), orNone(c.New))
	}
	var lines []string
	for _, v := range c.Old {
		if !slices.Contains(c.New, v) {
			lines = append(lines, c.Field+": - "+v)
		}
	}
	for _, v := range c.New {
		if !slices.Contains(c.Old, v) {
			lines = append(lines, c.Field+": + "+v)
		}
	}
	return strings.Join(lines, "\n    ")
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "(none)"
	}
	return strings.Join(v, ", ")
}

// Action is what a plan does with one resource.
type Action string

// Plan actions.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionNone   Action = "unchanged"
	// ActionUse marks a resource kubedirect uses but does not manage (an existing VPC).
	ActionUse Action = "use existing"
)

// ErrNeedsReplacement is returned when a resource differs from the spec in a way AWS cannot change in
// place; kubedirect refuses to replace resources on its own.
var ErrNeedsReplacement = errors.New("change needs replacement")

// actual is a resource as found in the cloud.
type actual struct {
	ID     string
	Fields []Field
	// Attrs are further outputs other tasks refer to (ARNs, DNS names).
	Attrs map[string]string
	// data is the task's own view of the resource, for Render.
	data any
}

// task is one AWS resource (or state-store object) the cluster needs, in the style of kOps' tasks.
type task interface {
	// Key is unique among the tasks and used for references: "vpc", "subnet/eu-west-1a".
	Key() string
	// Kind is the human name of the resource type.
	Kind() string
	// Name is the resource's name in AWS.
	Name() string
	// Deps are the keys of the tasks this one refers to; they run first.
	Deps() []string
	// Desired are the key fields the spec asks for.
	Desired(r *run) []Field
	// Find returns the resource as it is in the cloud, or nil when it is absent.
	Find(ctx context.Context, r *run) (*actual, error)
	// Render creates the resource (a == nil) or changes it in place, and returns it as it now is.
	Render(ctx context.Context, r *run, a *actual, changes []Change) (*actual, error)
}

// run is one plan, apply or delete against one account: clients, the model and what was found.
type run struct {
	cl      *Clients
	m       *model
	offline bool
	backoff Backoff
	found   map[string]*actual
	// images are the AMIs of the nodes per architecture, from the cluster state or looked up.
	images map[string]string
	log    func(msg string, args ...any)
}

// known reports whether the task with this key exists (was found or created).
func (r *run) known(key string) bool { return r.found[key] != nil && r.found[key].ID != "" }

// ref is the ID of the task with this key, or a placeholder while it does not exist yet.
func (r *run) ref(key string) string {
	if a := r.found[key]; a != nil && a.ID != "" {
		return a.ID
	}
	return "(" + key + ", known after create)"
}

// attr is an output of the task with this key, or a placeholder while it does not exist yet.
func (r *run) attr(key, name string) string {
	if a := r.found[key]; a != nil && a.Attrs[name] != "" {
		return a.Attrs[name]
	}
	return "(" + key + " " + name + ", known after create)"
}

// PlanItem is what a plan does with one resource.
type PlanItem struct {
	Kind, Name string
	Action     Action
	ID         string
	Fields     []Field
	Changes    []Change
}

// Plan lists every resource of a cluster and what create does with it.
type Plan struct {
	Header []string
	Items  []PlanItem
}

// counts is the number of the plan's items by action.
func (p *Plan) counts() map[Action]int {
	n := map[Action]int{}
	for _, it := range p.Items {
		n[it.Action]++
	}
	return n
}

// Pending counts the resources a plan creates or changes.
func (p *Plan) Pending() int {
	n := p.counts()
	return n[ActionCreate] + n[ActionUpdate]
}

// Summary counts what the plan creates, changes and leaves, on one line.
func (p *Plan) Summary() string {
	n := p.counts()
	return fmt.Sprintf("%d resources created, %d changed, %d unchanged or used as they are.", n[ActionCreate], n[ActionUpdate], n[ActionNone]+n[ActionUse])
}

// Write prints the plan (String) to w.
func (p *Plan) Write(w io.Writer) error {
	_, err := io.WriteString(w, p.String())
	return err
}

// String is the plan as the CLI shows it: "+" creates, "~" changes in place, "=" is already as the spec
// wants, then a count of each.
func (p *Plan) String() string {
	var b strings.Builder
	for _, h := range p.Header {
		b.WriteString(h + "\n")
	}
	for _, it := range p.Items {
		switch it.Action {
		case ActionCreate:
			fmt.Fprintf(&b, "\n+ %s %s\n", it.Kind, it.Name)
			for _, f := range it.Fields {
				fmt.Fprintf(&b, "    %s: %s\n", f.Name, f.Value)
			}
		case ActionUpdate:
			fmt.Fprintf(&b, "\n~ %s %s (%s)\n", it.Kind, it.Name, it.ID)
			for _, c := range it.Changes {
				fmt.Fprintf(&b, "    %s\n", c)
			}
			if it.Kind == "LaunchTemplate" {
				b.WriteString("    (a new default version: instances launched from now on use it; running ones keep theirs until replaced)\n")
			}
		case ActionUse:
			fmt.Fprintf(&b, "\n= %s %s (used as it is, never changed or deleted)\n", it.Kind, it.Name)
			for _, f := range it.Fields {
				fmt.Fprintf(&b, "    %s: %s\n", f.Name, f.Value)
			}
		default:
			fmt.Fprintf(&b, "\n= %s %s (%s)\n", it.Kind, it.Name, it.ID)
		}
	}
	n := p.counts()
	fmt.Fprintf(&b, "\nPlan: %d to create, %d to change, %d unchanged or used as they are.\n", n[ActionCreate], n[ActionUpdate], len(p.Items)-p.Pending())
	return b.String()
}

// compare returns the fields whose desired values differ from the actual ones, as sets per name.
func compare(desired, actual []Field) []Change {
	want, have := groupFields(desired), groupFields(actual)
	var names []string
	immutable := map[string]bool{}
	for _, f := range desired {
		if !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
		immutable[f.Name] = immutable[f.Name] || f.Immutable
	}
	var changes []Change
	for _, n := range names {
		if !slices.Equal(want[n], have[n]) {
			changes = append(changes, Change{Field: n, Old: have[n], New: want[n], Immutable: immutable[n]})
		}
	}
	return changes
}

func groupFields(fields []Field) map[string][]string {
	g := map[string][]string{}
	for _, f := range fields {
		g[f.Name] = append(g[f.Name], f.Value)
	}
	for _, v := range g {
		sort.Strings(v)
	}
	return g
}

// step plans one task: it finds the resource (unless offline or a dependency is still missing) and
// compares it with the spec.
func (r *run) step(ctx context.Context, t task) (PlanItem, *actual, error) {
	item := PlanItem{Kind: t.Kind(), Name: t.Name(), Action: ActionCreate}
	var a *actual
	if !r.offline && r.depsKnown(t) {
		err := retry(ctx, r.backoff, func() error {
			var err error
			a, err = t.Find(ctx, r)
			return err
		})
		if err != nil {
			return item, nil, fmt.Errorf("find %s %s: %w", t.Kind(), t.Name(), explain(err))
		}
	}
	r.found[t.Key()] = a
	if k, ok := t.(interface{ knownID() string }); ok && a == nil && r.offline {
		// The spec names it (an existing VPC): its ID is known without asking AWS.
		r.found[t.Key()] = &actual{ID: k.knownID()}
	}
	item.Fields = t.Desired(r)
	if a != nil {
		item.ID = a.ID
		item.Changes = compare(item.Fields, a.Fields)
		item.Action = ActionUpdate
		if len(item.Changes) == 0 {
			item.Action = ActionNone
		}
	}
	if ext, ok := t.(interface{ external() bool }); ok && ext.external() && (a != nil || r.offline) {
		item.Action = ActionUse
	}
	return item, a, nil
}

func (r *run) depsKnown(t task) bool {
	for _, d := range t.Deps() {
		if !r.known(d) {
			return false
		}
	}
	return true
}

// plan finds every task in order and returns what apply would do, headed for an offline plan or not.
func (r *run) plan(ctx context.Context, tasks []task, offline bool) (*Plan, error) {
	p := &Plan{Header: r.m.header(offline)}
	for _, t := range tasks {
		item, _, err := r.step(ctx, t)
		if err != nil {
			return nil, err
		}
		p.Items = append(p.Items, item)
	}
	return p, nil
}

// apply brings every task in order to the desired state and returns what it did. It stops at the first
// failure; what was made stays, and the next apply resumes from there.
func (r *run) apply(ctx context.Context, tasks []task) (*Plan, error) {
	p := &Plan{}
	for _, t := range tasks {
		item, a, err := r.step(ctx, t)
		if err != nil {
			return p, err
		}
		p.Items = append(p.Items, item)
		for _, c := range item.Changes {
			if c.Immutable {
				return p, fmt.Errorf("update %s %s (%s): %s: %w; delete the cluster or revert the spec", t.Kind(), t.Name(), item.ID, c, ErrNeedsReplacement)
			}
		}
		if item.Action == ActionNone || item.Action == ActionUse {
			continue
		}
		verb := "create"
		if a != nil {
			verb = "update"
		}
		r.log(verb+" resource", "kind", t.Kind(), "name", t.Name())
		var out *actual
		changes, attempted := item.Changes, false
		err = retry(ctx, r.backoff, func() error {
			if attempted {
				// A failed attempt may have done part of the work (created the resource, then failed
				// to configure it): look again rather than create it twice.
				found, err := t.Find(ctx, r)
				if err != nil {
					return err
				}
				a, changes = found, nil
				if found != nil {
					if changes = compare(t.Desired(r), found.Fields); len(changes) == 0 {
						out = found
						return nil
					}
				}
			}
			attempted = true
			var err error
			out, err = t.Render(ctx, r, a, changes)
			return err
		})
		if err != nil {
			return p, fmt.Errorf("%s %s %s: %w", verb, t.Kind(), t.Name(), explain(err))
		}
		r.found[t.Key()] = out
		p.Items[len(p.Items)-1].ID = out.ID
	}
	return p, nil
}

// Backoff says how often and how long to retry a call that failed with an error AWS gives while it is
// eventually consistent (a resource just created not visible yet, a dependency still being released)
// or throttling.
type Backoff struct {
	Attempts int
	Initial  time.Duration
	Max      time.Duration
}

// DefaultBackoff retries for about five minutes.
var DefaultBackoff = Backoff{Attempts: 40, Initial: time.Second, Max: 10 * time.Second}

func retry(ctx context.Context, b Backoff, fn func() error) error {
	delay := b.Initial
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt >= b.Attempts {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, b.Max)
	}
}
