// Command mkimage builds storeedge's container image without a container runtime: an OCI image
// layout holding one image per platform under one index, written as a tar archive that
// `docker load`, `podman load` and `skopeo copy oci-archive:…` read.
//
//	mkimage -version V -epoch SECONDS -ca FILE -config FILE -out ARCHIVE linux/amd64=BINARY linux/arm64=BINARY
//
// Each image is one layer on nothing (the binary is static): the binary at /usr/bin/storeedge
// with the one capability it may need (binding port 80, as the systemd unit grants it), the CA
// certificates for the cloud's TLS, the configuration at /etc/storeedge/storeedge.yaml (root's,
// readable by the account's group), the
// account storeedge (uid and gid 65532) it runs as, and its data folder /var/lib/storeedge. Every
// date is the epoch's, so one commit builds the same archive from the same CA certificates (the
// one input that depends on the building machine).
// go-containerregistry writes the manifests, configs and digests (the OCI image spec's format is
// easy to get subtly wrong by hand).
package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The account the daemon runs as inside the container: not root, the number distroless images
// use for theirs.
const (
	uid     = 65532
	dataDir = "var/lib/storeedge"
)

func main() {
	version := flag.String("version", "", "the image's version, also its tag")
	epoch := flag.Int64("epoch", 0, "the date of every file and of the image, in seconds since 1970 (SOURCE_DATE_EPOCH)")
	caFile := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "the CA certificates the image trusts")
	configFile := flag.String("config", "", "the configuration file the image carries at /etc/storeedge/storeedge.yaml")
	out := flag.String("out", "", "the archive to write")
	source := flag.String("source", "", "where the source lives (the org.opencontainers.image.source label), optional")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkimage -version V -epoch N -config FILE -out ARCHIVE os/arch=BINARY...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *version == "" || *configFile == "" || *out == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := build(*version, time.Unix(*epoch, 0).UTC(), *caFile, *configFile, *source, *out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func build(version string, date time.Time, caFile, configFile, source, out string, platforms []string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	conf, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, bin, ok := strings.Cut(p, "=")
		goos, arch, ok2 := strings.Cut(plat, "/")
		if !ok || !ok2 || goos != "linux" {
			return fmt.Errorf("%q: want linux/ARCH=BINARY", p)
		}
		exe, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		img, err := image(version, date, source, arch, exe, ca, conf)
		if err != nil {
			return fmt.Errorf("%s: %w", plat, err)
		}
		platform := v1.Platform{OS: goos, Architecture: arch}
		if arch == "arm64" {
			platform.Variant = "v8"
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	}

	dir, err := os.MkdirTemp(filepath.Dir(out), ".mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// The tag names the image for skopeo and podman (ref.name) and for docker load, which reads
	// the containerd name.
	err = lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
		"io.containerd.image.name":          "docker.io/library/storeedge:" + version,
	}))
	if err != nil {
		return err
	}
	return writeArchive(dir, out, date)
}

// image is the image of one platform.
func image(version string, date time.Time, source, arch string, exe, ca, conf []byte) (v1.Image, error) {
	layer, err := rootLayer(date, exe, ca, conf)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: date}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: created, CreatedBy: "mkimage: storeedge " + version, Comment: "storeedge and what it needs"}})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "storeedge",
		"org.opencontainers.image.description": "The in-store edge server: serves the shop's devices from a local cache kept in step with the cloud.",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.created":     date.Format(time.RFC3339),
	}
	if source != "" {
		labels["org.opencontainers.image.source"] = source
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = arch, "linux", created
	if arch == "arm64" {
		cf.Variant = "v8"
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"/usr/bin/storeedge"},
		Cmd:        []string{"run", "--config", "/etc/storeedge/storeedge.yaml"},
		WorkingDir: "/" + dataDir,
		Env:        []string{"PATH=/usr/bin"},
		Volumes:    map[string]struct{}{"/" + dataDir: {}},
		// The LAN ports of the default configuration (docs/configuration.md); discovery's UDP
		// broadcast and mDNS need the host's network (docs/install.md).
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {},
			"8003/tcp": {}, "8004/tcp": {}, "8005/tcp": {}, "57854/udp": {}, "5353/udp": {}},
		StopSignal: "SIGTERM",
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

// rootLayer is the image's one layer, as an uncompressed tar; go-containerregistry compresses it.
func rootLayer(date time.Time, exe, ca, conf []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner,
			ModTime: date, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, group int, data []byte, pax map[string]string) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Gid: group, Size: int64(len(data)),
			ModTime: date, PAXRecords: pax, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nstoreedge:x:%d:%d:storeedge:/%s:/sbin/nologin\n", uid, uid, dataDir)
	group := fmt.Sprintf("root:x:0:\nstoreedge:x:%d:\n", uid)
	// Parents before children, each once, so that every tool unpacks the same tree.
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/group", 0o644, 0, []byte(group), nil) },
		func() error { return file("etc/passwd", 0o644, 0, []byte(passwd), nil) },
		func() error { return dir("etc/ssl", 0o755, 0) },
		func() error { return dir("etc/ssl/certs", 0o755, 0) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, 0, ca, nil) },
		func() error { return dir("etc/storeedge", 0o755, 0) },
		// Closed to others, as install.md asks of the configuration (doctor checks it): the
		// account reads it by its group.
		func() error { return file("etc/storeedge/storeedge.yaml", 0o640, uid, conf, nil) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/bin", 0o755, 0) },
		func() error {
			return file("usr/bin/storeedge", 0o755, 0, exe, map[string]string{"SCHILY.xattr.security.capability": netBindService()})
		},
		func() error { return dir("var", 0o755, 0) },
		func() error { return dir("var/lib", 0o755, 0) },
		func() error { return dir(dataDir, 0o700, uid) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// netBindService is the file capability cap_net_bind_service=+ep as the kernel stores it in the
// security.capability attribute (struct vfs_cap_data, revision 2): a process of the file, run by
// any user, may bind ports under 1024 when the container's bounding set keeps that capability,
// as Docker's, Podman's and runc's defaults do.
func netBindService() string {
	const (
		revision2     = 0x02000000
		effective     = 0x000001
		capNetBindSvc = 10
	)
	var b [20]byte
	binary.LittleEndian.PutUint32(b[0:], revision2|effective)
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetBindSvc) // permitted, low word
	return string(b[:])
}

// writeArchive writes the layout in dir as a tar archive at out, its entries sorted and dated
// date, by way of a temporary file renamed into place.
func writeArchive(dir, out string, date time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, path := range names {
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: date, Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, in)
		in.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
