package aws

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// fakeTask is a task that only has a key and dependencies, for ordering.
type fakeTask struct {
	key  string
	deps []string
}

func (t fakeTask) Key() string                                 { return t.key }
func (t fakeTask) Kind() string                                { return "Fake" }
func (t fakeTask) Name() string                                { return t.key }
func (t fakeTask) Deps() []string                              { return t.deps }
func (t fakeTask) Desired(*run) []Field                        { return nil }
func (t fakeTask) Find(context.Context, *run) (*actual, error) { return nil, nil }
func (t fakeTask) Render(context.Context, *run, *actual, []Change) (*actual, error) {
	return nil, nil
}

func keys(ts []task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Key()
	}
	return out
}

// TestEveryTaskRunsAfterItsDependencies: for the example and its variants (SSH key, existing VPC, a
// third zone), every resource is found and created after the resources it refers to, however tasks()
// lists them.
func TestEveryTaskRunsAfterItsDependencies(t *testing.T) {
	for name, edit := range map[string]func(m *model){
		"example":      func(*model) {},
		"ssh key":      func(m *model) { m.sshKey = "ssh-ed25519 AAAA test" },
		"existing vpc": func(m *model) { m.existingVPC = "vpc-0123" },
		"another zone": func(m *model) { m.zones = append(m.zones, "eu-west-1z") },
	} {
		t.Run(name, func(t *testing.T) {
			m, err := newModel(loadExample(t), "")
			if err != nil {
				t.Fatal(err)
			}
			edit(m)
			listed := m.tasks()
			reversed := slices.Clone(listed)
			slices.Reverse(reversed)
			for _, in := range [][]task{listed, reversed} {
				got, err := orderTasks(in)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(in) {
					t.Fatalf("orderTasks returned %d tasks of %d", len(got), len(in))
				}
				pos := map[string]int{}
				for i, k := range keys(got) {
					pos[k] = i
				}
				for _, tk := range got {
					for _, d := range tk.Deps() {
						if pos[d] >= pos[tk.Key()] {
							t.Errorf("%s runs before its dependency %s: %v", tk.Key(), d, keys(got))
						}
					}
				}
			}
		})
	}
}

// TestOrderTasksIsStable: where the dependencies allow, the plan lists resources as given, so the
// same spec always gives the same plan.
func TestOrderTasksIsStable(t *testing.T) {
	got, err := orderTasks([]task{
		fakeTask{key: "c", deps: []string{"a"}}, fakeTask{key: "b"}, fakeTask{key: "a"}, fakeTask{key: "d"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b", "a", "c", "d"}; !slices.Equal(keys(got), want) {
		t.Errorf("order %v, want %v", keys(got), want)
	}
}

// TestOrderTasksRefusesBrokenDependencies: a cycle, a dependency no task has, or a repeated key is an
// error naming the tasks, not a plan that would refer to resources that never exist.
func TestOrderTasksRefusesBrokenDependencies(t *testing.T) {
	for name, c := range map[string]struct {
		tasks []task
		want  string
	}{
		"cycle":   {[]task{fakeTask{key: "x"}, fakeTask{key: "a", deps: []string{"b"}}, fakeTask{key: "b", deps: []string{"a"}}}, "dependency cycle among a, b"},
		"unknown": {[]task{fakeTask{key: "a", deps: []string{"vpc"}}}, `a depends on "vpc", which no task has`},
		"repeat":  {[]task{fakeTask{key: "a"}, fakeTask{key: "a"}}, `two tasks have key "a"`},
	} {
		if _, err := orderTasks(c.tasks); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}
