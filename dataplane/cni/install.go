package cni

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ConfListName is the file the conflist is written to; the 10- prefix makes runtimes pick it first.
const ConfListName = "10-kubedirect.conflist"

// InstallOptions say where to install the plugin.
type InstallOptions struct {
	// BinDir receives the plugin (default /opt/cni/bin) and ConfDir the conflist (default /etc/cni/net.d).
	BinDir, ConfDir string
	// Binary is the kubedirect executable to copy (default: the running executable).
	Binary string
	// DataDir, MTU and PodCIDR go into the network config (empty: the plugin's defaults).
	DataDir string
	MTU     int
	PodCIDR string
}

// Install copies the kubedirect binary into BinDir as kubedirect.bin, writes BinDir/kubedirect as a
// small /bin/sh wrapper that runs `kubedirect.bin cni` (runtimes exec a plugin by its type name with no
// arguments), and writes the conflist to ConfDir. Every file is replaced atomically.
func Install(o InstallOptions) error {
	if o.BinDir == "" {
		o.BinDir = "/opt/cni/bin"
	}
	if o.ConfDir == "" {
		o.ConfDir = "/etc/cni/net.d"
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
		o.Binary = exe
	}
	for _, d := range []string{o.BinDir, o.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	src, err := os.Open(o.Binary)
	if err != nil {
		return fmt.Errorf("open %s: %w", o.Binary, err)
	}
	defer src.Close()
	if err := writeAtomic(filepath.Join(o.BinDir, PluginName+".bin"), 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	}); err != nil {
		return err
	}
	wrapper := "#!/bin/sh\nexec \"$(dirname \"$0\")/" + PluginName + ".bin\" cni \"$@\"\n"
	if err := writeAtomic(filepath.Join(o.BinDir, PluginName), 0o755, func(w io.Writer) error {
		_, err := io.WriteString(w, wrapper)
		return err
	}); err != nil {
		return err
	}
	data, err := ConfList(o.DataDir, o.MTU, o.PodCIDR)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(o.ConfDir, ConfListName), 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// ConfList renders the conflist with one kubedirect plugin entry (and the portmap-free defaults).
func ConfList(dataDir string, mtu int, podCIDR string) ([]byte, error) {
	plugin := map[string]any{"type": PluginName}
	if dataDir != "" {
		plugin["dataDir"] = dataDir
	}
	if mtu != 0 {
		plugin["mtu"] = mtu
	}
	if podCIDR != "" {
		plugin["podCIDR"] = podCIDR
	}
	out, err := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kubedirect",
		"plugins":    []any{plugin},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	return append(out, '\n'), nil
}

func writeAtomic(path string, mode os.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temp for %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}
