// Command mkimages writes container images made of local files (the Kubernetes control-plane
// components, etcd, CoreDNS and pause built from source) into one docker-archive tarball, tagged as
// kubeadm expects them, for import into a node's containerd. Output is reproducible: fixed
// timestamps, owners and file order, so equal inputs give equal digests.
//
// The images are described as JSON on stdin:
//
//	[{"ref": "registry.k8s.io/pause:3.10.1", "files": {"/pause": "/path/to/pause"},
//	  "entrypoint": ["/pause"], "user": "65535"}]
//
// Usage: mkimages -o images.tar < images.json
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageSpec is one image to write.
type imageSpec struct {
	Ref        string            `json:"ref"`
	Files      map[string]string `json:"files"` // path in the image -> path on this machine
	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd"`
	User       string            `json:"user"`
}

// epoch is the timestamp of every file and image: a fixed one keeps digests reproducible.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	out := flag.String("o", "", "docker-archive tarball to write")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkimages -o images.tar < images.json")
		os.Exit(2)
	}
	if err := run(os.Stdin, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out string) error {
	var specs []imageSpec
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&specs); err != nil {
		return fmt.Errorf("decode image specs: %w", err)
	}
	base, err := baseLayer()
	if err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, s := range specs {
		ref, err := name.NewTag(s.Ref, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("parse image ref %q: %w", s.Ref, err)
		}
		img, err := build(s, base)
		if err != nil {
			return fmt.Errorf("build %s: %w", s.Ref, err)
		}
		refs[ref] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// baseLayer holds what every image shares: /etc/passwd and /etc/group with root and nobody, and /tmp.
func baseLayer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := writeFile(tw, n, 0o644, strings.NewReader(files[n]), int64(len(files[n]))); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

// build makes one image: the base layer and a layer with the spec's files.
func build(s imageSpec, base v1.Layer) (v1.Image, error) {
	if len(s.Files) == 0 {
		return nil, errors.New("no files")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, dst := range slices.Sorted(maps.Keys(s.Files)) {
		if !path.IsAbs(dst) {
			return nil, fmt.Errorf("image path %q is not absolute", dst)
		}
		rel := strings.TrimPrefix(path.Clean(dst), "/")
		// parent directories first, each once
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/") + "/"
			if seen[dir] || dir == "etc/" || dir == "tmp/" {
				continue
			}
			seen[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		if err := addHostFile(tw, rel, s.Files[dst]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := layerFromBytes(buf.Bytes())
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: s.Entrypoint,
			Cmd:        s.Cmd,
			User:       s.User,
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "kubedirect mkimages: base"}},
		mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "kubedirect mkimages: " + s.Ref}},
	)
}

func addHostFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	return writeFile(tw, name, int64(st.Mode().Perm()), f, st.Size())
}

func writeFile(tw *tar.Writer, name string, mode int64, r io.Reader, size int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: epoch}); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

// layerFromBytes makes a gzip layer (fastest level: the binaries barely compress) from a tar stream.
func layerFromBytes(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
}
