package spec

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// wantedErrors reads the "# want: ..." lines at the top of a testdata file.
func wantedErrors(t *testing.T, data []byte) []string {
	t.Helper()
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			want = append(want, w)
		}
	}
	return want
}

func TestLoadTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(data)
			switch {
			case strings.HasPrefix(filepath.Base(f), "valid-"):
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
			case strings.HasPrefix(filepath.Base(f), "invalid-"):
				if err == nil {
					t.Fatal("invalid spec accepted")
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error does not wrap ErrInvalid: %v", err)
				}
				want := wantedErrors(t, data)
				if len(want) == 0 {
					t.Fatal("invalid testdata file has no '# want:' line")
				}
				for _, w := range want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q; got:\n%v", w, err)
					}
				}
				if got, n := strings.Count(err.Error(), "\n  - "), len(want); got != n {
					t.Errorf("got %d problems, want exactly %d:\n%v", got, n, err)
				}
			default:
				t.Fatal("testdata file must be named valid-* or invalid-*")
			}
		})
	}
}

func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("want at least 3 examples, got %v (%v)", files, err)
	}
	for _, f := range files {
		if _, err := LoadFile(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load([]byte("apiVersion: kubedirect.io/v1alpha1\nkind: Cluster\nmetadata: {name: d}\nspec: {provider: kind}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Spec
	checks := map[string][2]any{
		"kubernetesVersion":   {s.KubernetesVersion, DefaultKubernetesVersion},
		"podCIDR":             {s.Networking.PodCIDR, "10.244.0.0/16"},
		"serviceCIDR":         {s.Networking.ServiceCIDR, "10.96.0.0/16"},
		"encapsulation":       {s.Networking.Encapsulation, EncapsulationVXLAN},
		"externalServiceMode": {s.Networking.ExternalServiceMode, ModeTunnel},
		"nodeGroups":          {len(s.NodeGroups), 2},
		"nodeImage":           {s.Kind.NodeImage, "kindest/node:v1.34.4"},
		"conntrack":           {s.Dataplane.MapSizes.Conntrack, DefaultConntrackMapSize},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
}

func TestLoadFromStdin(t *testing.T) {
	in := strings.NewReader("apiVersion: kubedirect.io/v1alpha1\nkind: Cluster\nmetadata: {name: piped}\nspec: {provider: kind}\n")
	c, err := LoadFile("-", in)
	if err != nil || c.Metadata.Name != "piped" {
		t.Fatalf("LoadFile(-) = %v, %v", c, err)
	}
}

func TestLoadRejectsNonSpecs(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":     "",
		"not yaml":  "spec: [",
		"two docs":  "apiVersion: kubedirect.io/v1alpha1\nkind: Cluster\nmetadata: {name: a}\nspec: {provider: kind}\n---\nkind: Cluster\n",
		"a list":    "- 1\n- 2\n",
		"bad count": "apiVersion: kubedirect.io/v1alpha1\nkind: Cluster\nmetadata: {name: a}\nspec:\n  provider: kind\n  nodeGroups: {name: x}\n",
	} {
		if _, err := Load([]byte(doc)); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Load error = %v, want ErrInvalid", name, err)
		}
	}
	// Keys given twice, and keys that are no words, are named with their path.
	for doc, want := range map[string]string{
		"kind: Cluster\nspec:\n  provider: kind\n  provider: aws\n": "  - spec.provider: set twice (lines 3 and 4)",
		"kind: Cluster\n\"\": 1\n":                                  `  - "": unknown field (line 2)`,
		"kind: Cluster\n\"a: b\": 1\n":                              `  - "a: b": unknown field (line 2)`,
	} {
		if _, err := Load([]byte(doc)); err == nil || !strings.Contains(err.Error(), want+"\n") {
			t.Errorf("Load(%q) = %v, want a line %q", doc, err, want)
		}
	}
	// A key that is a list or a mapping (the fuzzer's "[0]:") is named as written and said to be no field
	// name, once: not again as yaml's "cannot unmarshal !!seq into string" without a path.
	for doc, want := range map[string]string{
		"[0]:":                                `  - "[0]": unknown field (line 1): a key must be a field name, not a list`,
		"kind: Cluster\nspec:\n  {a: 1}: x\n": `  - spec."{a: 1}": unknown field (line 3): a key must be a field name, not a mapping`,
	} {
		_, err := Load([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "cannot unmarshal") {
			t.Errorf("Load(%q) = %v, want a line %q and no yaml type error", doc, err, want)
		}
	}
	// A document that is no mapping gets one line saying so, not a list of every missing field.
	for doc, want := range map[string]string{"0": `line 1: the document is the value "0", want a Cluster`, "- 1\n- 2\n": "line 1: the document is a list, want a Cluster"} {
		_, err := Load([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Load(%q) = %v, want one line with %q", doc, err, want)
		}
	}
}

func TestParseStateStore(t *testing.T) {
	b, p, err := ParseStateStore("s3://my-bucket/a/b/")
	if err != nil || b != "my-bucket" || p != "a/b" {
		t.Fatalf("got %q %q %v", b, p, err)
	}
	for _, bad := range []string{"my-bucket", "s3://", "s3://UPPER/x", "gs://b/x", "s3://a..b"} {
		if _, _, err := ParseStateStore(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// An explicitly empty access list: api: [] would admit no one to the API that create cluster must
// reach, so it is refused rather than replaced by the default (the world); ssh: [] and nodePort: [] mean
// none, as leaving them out does, and load as the same spec.
func TestEmptyAccessLists(t *testing.T) {
	base, err := os.ReadFile("testdata/valid-aws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(append(base, "      api: []\n"...))
	if err == nil || !strings.Contains(err.Error(), "  - spec.aws.access.api: Required value: an empty list admits no one") {
		t.Errorf("api: [] loaded with error %v, want spec.aws.access.api refused", err)
	}
	without := strings.Replace(string(base), "      ssh: [198.51.100.7/32]\n", "", 1)
	want, err := Load([]byte(without))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load([]byte(without + "      ssh: []\n      nodePort: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ssh: [] and nodePort: [] load as %+v, leaving them out as %+v", got.Spec.AWS.Access, want.Spec.AWS.Access)
	}
}
