package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// problemLine is one item of Load's error list: a field path, then what is wrong with it.
var problemLine = regexp.MustCompile(`^  - [a-zA-Z][a-zA-Z0-9]*(\[[0-9]+\])?(\.[a-zA-Z][a-zA-Z0-9]*(\[[0-9]+\])?)*: `)

// unknownLine names an unknown field: the last element is the key as the user wrote it, quoted
// unless it is a plain word.
var unknownLine = regexp.MustCompile(`^  - ([a-zA-Z][a-zA-Z0-9]*(\[[0-9]+\])?\.)*([A-Za-z0-9_-]+|"([^"\\]|\\.)*"): (unknown field|set twice)`)

// notOfAField are the problems that concern the whole document, not one field.
var notOfAField = []string{"  - the file holds more than one document"}

// FuzzLoad feeds arbitrary bytes (seeded with every spec in testdata and examples/) to the spec
// loader, as `create cluster -f` does. It must never panic; a rejected spec wraps ErrInvalid and every
// listed problem names its field path; an accepted spec is stable: validating it again finds nothing,
// defaulting it again changes nothing, and writing it out and loading it back gives the same spec.
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../../examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) == 1 {
				return // the document is not YAML, or empty: there is no field to name
			}
			for _, l := range lines[1:] {
				if !problemLine.MatchString(l) && !unknownLine.MatchString(l) && !hasAnyPrefix(l, notOfAField) {
					t.Fatalf("problem without a field path: %q\nin:\n%s", l, err)
				}
			}
			return
		}
		if errs := c.Validate(); len(errs) > 0 {
			t.Fatalf("a loaded spec fails validation again: %v", errs.ToAggregate())
		}
		again, err := Load(data) // a copy that shares nothing with c
		if err != nil {
			t.Fatalf("the same spec loads once and fails once: %v", err)
		}
		again.SetDefaults()
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("defaults are not idempotent:\n%+v\n%+v", c, again)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal a loaded spec: %v", err)
		}
		back, err := Load(out)
		if err != nil {
			t.Fatalf("a loaded spec written out does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("a loaded spec written out loads differently:\n%s", out)
		}
	})
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
