package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error that rejects a spec's content (as opposed to failing to read it).
var ErrInvalid = errors.New("invalid cluster spec")

// LoadFile reads, defaults and validates the spec at path; "-" reads standard input.
func LoadFile(path string, stdin io.Reader) (*Cluster, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster spec: %w", err)
	}
	return Load(data)
}

// Load decodes one spec document strictly, sets defaults and validates it. Unknown fields, type errors
// and validation problems are all reported together, each naming its field path.
func Load(data []byte) (*Cluster, error) {
	c, problems, err := decode(data)
	if err != nil {
		return nil, err
	}
	c.SetDefaults()
	for _, e := range c.Validate() {
		if !reportedAt(problems, e.Field) { // a value that failed to decode is not judged again
			problems = append(problems, e)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n%s", ErrInvalid, formatList(problems))
	}
	return c, nil
}

// Decode parses one spec document strictly, without defaulting or validating it. Every unknown field
// is reported with its path and line.
func Decode(data []byte) (*Cluster, error) {
	c, problems, err := decode(data)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n%s", ErrInvalid, formatList(problems))
	}
	return c, nil
}

// decode returns what could be decoded and the problems found on the way; err is set only when the
// document cannot be read as YAML at all.
func decode(data []byte) (*Cluster, []error, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil, fmt.Errorf("%w: the document is empty", ErrInvalid)
	}
	if doc := root.Content[0]; doc.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%w: line %d: the document is %s, want a Cluster (a mapping of apiVersion, kind, metadata and spec)", ErrInvalid, doc.Line, nodeKind(doc))
	}
	var problems []error
	paths, badKeys := map[int]string{}, map[int]bool{}
	unknownFields(root.Content[0], reflect.TypeOf(Cluster{}), "", paths, badKeys, &problems)
	var c Cluster
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		for _, msg := range te.Errors {
			if duplicateKey.MatchString(msg) {
				continue // reported with its path by unknownFields
			}
			if m := keyTypeError.FindStringSubmatch(msg); m != nil {
				if line, _ := strconv.Atoi(m[1]); badKeys[line] {
					continue // a list or mapping as a key: reported with its path by unknownFields
				}
			}
			problems = append(problems, withPath(msg, paths))
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		problems = append(problems, errors.New("the file holds more than one document; give one Cluster"))
	}
	return &c, problems, nil
}

// nodeKind names a YAML node's kind for a user.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return "not a mapping"
}

// unknownFields walks a YAML node next to the Go type it decodes into and reports mapping keys that
// have no field, with their path and line. It records the path of each value's line in paths (to name
// yaml's type errors) and the lines of keys that are lists or mappings in badKeys.
func unknownFields(n *yaml.Node, t reflect.Type, path string, paths map[int]string, badKeys map[int]bool, problems *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		seen := map[string]int{} // key -> line
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Kind != yaml.ScalarNode {
				badKeys[key.Line] = true
				*problems = append(*problems, fmt.Errorf("%s: unknown field (line %d): a key must be a field name, not %s",
					keyPath(path, flowText(key)), key.Line, nodeKind(key)))
				continue
			}
			p := joinPath(path, key.Value)
			if first, dup := seen[key.Value]; dup {
				*problems = append(*problems, fmt.Errorf("%s: set twice (lines %d and %d)", keyPath(path, key.Value), first, key.Line))
				continue
			}
			seen[key.Value] = key.Line
			ft, ok := fields[key.Value]
			if !ok {
				*problems = append(*problems, fmt.Errorf("%s: unknown field (line %d)%s", keyPath(path, key.Value), key.Line, suggest(key.Value, fields)))
				continue
			}
			paths[val.Line] = p
			unknownFields(val, ft, p, paths, badKeys, problems)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if _, ok := paths[item.Line]; !ok { // an item on a line of its own: type errors there are its
				paths[item.Line] = p
			}
			unknownFields(item, t.Elem(), p, paths, badKeys, problems)
		}
	}
}

// flowText is a node as YAML in flow style on one line ("[0]", "{a: 1}"): how a key that is a list or
// a mapping is shown.
func flowText(n *yaml.Node) string {
	flow := *n
	flow.Style |= yaml.FlowStyle
	out, err := yaml.Marshal(&flow)
	if err != nil {
		return nodeKind(n)
	}
	return strings.TrimSpace(string(out))
}

// keyTypeError matches yaml.v3's message for a key that is a list or a mapping where a field name goes.
var keyTypeError = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(seq|map) into string$`)

// duplicateKey matches yaml.v3's message for a key given twice in one mapping.
var duplicateKey = regexp.MustCompile(`^line \d+: mapping key ".*" already defined at line \d+$`)

// plainKey matches the keys that can be shown unquoted in a field path.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// typeErrorPattern matches yaml.v3's "line N: cannot unmarshal ..." messages.
var typeErrorPattern = regexp.MustCompile(`^line (\d+): (.*)$`)

// fieldError is a decoding problem of one field.
type fieldError struct {
	path, msg string
	line      int
}

func (e *fieldError) Error() string { return fmt.Sprintf("%s: %s (line %d)", e.path, e.msg, e.line) }

// withPath names the field of a yaml.v3 type error by the line it is on.
func withPath(msg string, paths map[int]string) error {
	m := typeErrorPattern.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(msg)
	}
	line, _ := strconv.Atoi(m[1])
	p, ok := paths[line]
	if !ok {
		return errors.New(msg)
	}
	return &fieldError{path: p, msg: m[2], line: line}
}

func reportedAt(problems []error, path string) bool {
	for _, e := range problems {
		var fe *fieldError
		if errors.As(e, &fe) && fe.path == path {
			return true
		}
	}
	return false
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest names a known field that differs from a misspelt one only in case, a common slip.
func suggest(key string, fields map[string]reflect.Type) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf(", did you mean %q?", name)
		}
	}
	return ""
}

// keyPath is the path of a key the user wrote, quoted when it is no plain word (empty, or with spaces
// or colons) so that the path still reads.
func keyPath(parent, key string) string {
	if !plainKey.MatchString(key) {
		key = strconv.Quote(key)
	}
	return joinPath(parent, key)
}

func joinPath(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func formatList(errs []error) string {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("  - ")
		b.WriteString(e.Error())
	}
	return b.String()
}
