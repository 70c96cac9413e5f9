package install

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BinaryPath is where the self-image holds the kubedirect binary; it is also the image's entrypoint.
const BinaryPath = "/usr/local/bin/kubedirect"

// NodeBinaryEnv names an environment variable that, when set, gives the path of the linux binary to
// put into the self-image instead of the running one.
const NodeBinaryEnv = "KUBEDIRECT_NODE_BINARY"

// ErrNotNodeBinary is returned for a binary the nodes cannot run: not a static Linux ELF executable of
// the nodes' architecture.
var ErrNotNodeBinary = errors.New("not a static linux executable for the nodes")

// SelfImage is the OCI image of a kubedirect binary.
type SelfImage struct {
	// Image is the self-image's reference (SelfImageRepository:bin-<hash>) and pull policy Never.
	Image Image
	// ID is the image's config digest ("sha256:..."), which container runtimes report as its ID.
	ID     string
	img    v1.Image
	binary []byte
}

// Binary is the kubedirect binary the image holds.
func (s *SelfImage) Binary() []byte { return s.binary }

// TagFor returns the self-image tag for a binary's content: a rebuilt binary gets a new tag, so it is
// loaded again and the DaemonSet rolls.
func TagFor(binary []byte) string {
	sum := sha256.Sum256(binary)
	return "bin-" + hex.EncodeToString(sum[:])[:16]
}

// BuildSelfImage makes a single-layer image holding binary at BinaryPath, with BinaryPath as the
// entrypoint, for linux/arch. The layer and config carry no timestamps, so the same binary always gives
// the same image ID.
func BuildSelfImage(binary []byte, arch string) (*SelfImage, error) {
	layerTar, err := layerTarball(binary)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("build self-image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("build self-image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build self-image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"--help"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "kubedirect",
			"org.opencontainers.image.description": "kubedirect agent, CNI plugin and echo probe (image of the CLI's own binary)",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build self-image config: %w", err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("self-image id: %w", err)
	}
	return &SelfImage{
		Image:  Image{Repository: SelfImageRepository, Tag: TagFor(binary), PullPolicy: "Never"},
		ID:     id.String(),
		img:    img,
		binary: binary,
	}, nil
}

// layerTarball is the image's only layer: the directories of BinaryPath, /tmp and the binary.
func layerTarball(binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, dir := range []string{"usr/", "usr/local/", "usr/local/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(BinaryPath, "/"), Mode: 0o755, Size: int64(len(binary)), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes the image as a docker-archive tarball (what `docker save` writes and
// `ctr images import` and kind's LoadImageArchive read), tagged with its reference.
func (s *SelfImage) WriteArchive(w io.Writer) error {
	tag, err := name.NewTag(s.Image.Ref(), name.WeakValidation)
	if err != nil {
		return fmt.Errorf("self-image tag %q: %w", s.Image.Ref(), err)
	}
	if err := tarball.Write(tag, s.img, w); err != nil {
		return fmt.Errorf("write self-image archive: %w", err)
	}
	return nil
}

// CheckNodeBinary reports whether the file at path is a statically linked Linux ELF executable for
// arch (a GOARCH value); it returns an error wrapping ErrNotNodeBinary when it is not.
func CheckNodeBinary(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", path, ErrNotNodeBinary, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == 0 || f.Machine != want {
		return fmt.Errorf("%s: %w: machine %s, nodes need %s", path, ErrNotNodeBinary, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: %w: dynamically linked (build with CGO_ENABLED=0)", path, ErrNotNodeBinary)
		}
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("%s: %w: OS ABI %s", path, ErrNotNodeBinary, f.OSABI)
	}
	return nil
}

// NodeBinary returns the contents of a kubedirect binary the nodes (linux/arch) can run:
//  1. the file named by $KUBEDIRECT_NODE_BINARY, if set (it must be a static linux/arch executable);
//  2. the running executable, if it is one (a release build, or `CGO_ENABLED=0 go build` on Linux);
//  3. otherwise a fresh build: when the working directory is inside kubedirect's source tree and `go` is
//     on PATH, `CGO_ENABLED=0 GOOS=linux GOARCH=arch go build ./cmd/kubedirect` into a temporary file.
//
// On macOS or with a cgo build, case 3 applies; without the sources, set $KUBEDIRECT_NODE_BINARY.
func NodeBinary(ctx context.Context, arch string) ([]byte, string, error) {
	if p := os.Getenv(NodeBinaryEnv); p != "" {
		if err := CheckNodeBinary(p, arch); err != nil {
			return nil, "", fmt.Errorf("$%s: %w", NodeBinaryEnv, err)
		}
		b, err := os.ReadFile(p)
		return b, p, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("find running executable: %w", err)
	}
	if runtime.GOOS == "linux" {
		if err := CheckNodeBinary(self, arch); err == nil {
			b, err := os.ReadFile(self)
			return b, self, err
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, "", fmt.Errorf("the running kubedirect (%s) cannot run on linux/%s nodes and no source tree to build one was found (%v): build one with `CGO_ENABLED=0 GOOS=linux GOARCH=%s go build ./cmd/kubedirect` and set $%s to it", self, arch, err, arch, NodeBinaryEnv)
	}
	dir, err := os.MkdirTemp("", "kubedirect-node-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "kubedirect")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/kubedirect")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("build linux/%s kubedirect in %s: %w: %s", arch, root, err, strings.TrimSpace(string(msg)))
	}
	b, err := os.ReadFile(out)
	return b, "go build ./cmd/kubedirect (linux/" + arch + ")", err
}

// moduleRoot finds the kubedirect module's directory at or above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/kubedirect/kubedirect\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no github.com/kubedirect/kubedirect go.mod above the working directory")
		}
		dir = parent
	}
}
