package install

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestSelfImageArchive writes the self-image as a docker-archive and reads it back: one layer holding
// the binary at /usr/local/bin/kubedirect (mode 0755), that path as the entrypoint, linux/amd64, and
// the archive tagged with the image's reference.
func TestSelfImageArchive(t *testing.T) {
	binary := []byte("\x7fELF pretend kubedirect binary")
	si, err := BuildSelfImage(binary, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if si.Image.Repository != SelfImageRepository || si.Image.Tag != TagFor(binary) || si.Image.PullPolicy != "Never" {
		t.Errorf("image %+v", si.Image)
	}
	var buf bytes.Buffer
	if err := si.WriteArchive(&buf); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()

	// The docker-archive manifest names the reference kind's nodes will know the image by.
	manifest := readTarMember(t, archive, "manifest.json")
	var entries []struct{ RepoTags []string }
	if err := json.Unmarshal(manifest, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !slices.Contains(entries[0].RepoTags, si.Image.Ref()) {
		t.Errorf("manifest.json RepoTags %+v, want %s", entries, si.Image.Ref())
	}

	tag, err := name.NewTag(si.Image.Ref())
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/kubedirect"}) || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config entrypoint %v platform %s/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	id, err := img.ConfigName()
	if err != nil || id.String() != si.ID {
		t.Errorf("image id %v, SelfImage.ID %s (%v)", id, si.ID, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "usr/local/bin/kubedirect" {
			found = true
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, binary) || h.Mode != 0o755 || h.Typeflag != tar.TypeReg {
				t.Errorf("binary in layer: mode %o type %c content %q", h.Mode, h.Typeflag, got)
			}
		}
	}
	if !found {
		t.Error("layer has no usr/local/bin/kubedirect")
	}
}

func readTarMember(t *testing.T, archive []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in archive: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

// TestSelfImageReproducible: the same binary gives the same image ID and tag; another binary gives
// new ones, so a rebuilt binary is loaded again.
func TestSelfImageReproducible(t *testing.T) {
	a1, err := BuildSelfImage([]byte("one"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := BuildSelfImage([]byte("one"), "amd64")
	b, _ := BuildSelfImage([]byte("two"), "amd64")
	if a1.ID != a2.ID || a1.Image != a2.Image {
		t.Errorf("same binary, different images: %s %s", a1.ID, a2.ID)
	}
	if a1.ID == b.ID || a1.Image.Tag == b.Image.Tag {
		t.Errorf("different binaries, same image %s / tag %s", a1.ID, a1.Image.Tag)
	}
	if !strings.HasPrefix(a1.Image.Tag, "bin-") || len(a1.Image.Tag) != len("bin-")+16 {
		t.Errorf("tag %q", a1.Image.Tag)
	}
}

func TestCheckNodeBinaryRejectsNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckNodeBinary(p, "amd64"); !errors.Is(err, ErrNotNodeBinary) {
		t.Errorf("err = %v, want ErrNotNodeBinary", err)
	}
}

// TestNodeBinaryFromEnv: $KUBEDIRECT_NODE_BINARY must point at a node-runnable binary.
func TestNodeBinaryFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kubedirect")
	if err := os.WriteFile(p, []byte("not elf"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(NodeBinaryEnv, p)
	if _, _, err := NodeBinary(t.Context(), "amd64"); !errors.Is(err, ErrNotNodeBinary) {
		t.Errorf("err = %v", err)
	}
}
