package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binaries are the example's two programs.
type Binaries struct {
	// CCM is cmd/localcloud-ccm, Cloud is cmd/localcloud.
	CCM, Cloud string
}

const repoModule = "github.com/ccmkit/ccmkit"

// RepoRoot returns the directory of the ccmkit module that contains the
// working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRepoRoot(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("%s is not inside the ccmkit repository (module %s)", wd, repoModule)
		}
	}
}

func isRepoRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == repoModule
		}
	}
	return false
}

// versionLDFlags returns the -ldflags that stamp the example's binaries
// with the Kubernetes version of the libraries they are built with
// (k8s.io/component-base v0.X.Y is Kubernetes v1.X.Y), as the Makefile's
// demo target does: without it upstream's Version log line, the
// kubernetes_build_info metric and the API clients' User-Agent say
// v0.0.0-master. The version is read from the module at root.
func versionLDFlags(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "k8s.io/component-base")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m k8s.io/component-base: %w", err)
	}
	return kubeLDFlags(strings.TrimSpace(string(out)))
}

// kubeLDFlags returns the -ldflags value for component-base version lib.
func kubeLDFlags(lib string) (string, error) {
	parts := strings.SplitN(strings.TrimPrefix(lib, "v"), ".", 3)
	if len(parts) != 3 || parts[0] != "0" {
		return "", fmt.Errorf("k8s.io/component-base %s: want v0.X.Y", lib)
	}
	kube := "v1." + parts[1] + "." + parts[2]
	var flags []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags, "-X", p+".gitVersion="+kube, "-X", p+".gitMajor=1", "-X", p+".gitMinor="+parts[1], "-X", p+".gitTreeState=clean")
	}
	return strings.Join(flags, " "), nil
}

// Build builds both binaries into dir with the go command on $PATH,
// writing what it does to progress (nil: nowhere). A cold build compiles
// the Kubernetes libraries and takes a few minutes on 2 cores; a warm one
// seconds.
func Build(ctx context.Context, dir string, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	out := Binaries{CCM: filepath.Join(dir, "localcloud-ccm"), Cloud: filepath.Join(dir, "localcloud")}
	start := time.Now()
	fmt.Fprintf(progress, "building localcloud and localcloud-ccm into %s (the first build compiles the Kubernetes libraries: a few minutes on 2 cores)\n", dir)
	ldflags, err := versionLDFlags(ctx, root)
	if err != nil {
		return Binaries{}, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", dir+string(filepath.Separator),
		"./examples/localcloud/cmd/localcloud", "./examples/localcloud/cmd/localcloud-ccm")
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = progress, io.MultiWriter(progress, &stderr)
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w\n%s", err, stderr.String())
	}
	for _, bin := range []string{out.CCM, out.Cloud} {
		if _, err := os.Stat(bin); err != nil {
			return Binaries{}, errors.Join(fmt.Errorf("go build made no %s", bin), err)
		}
	}
	fmt.Fprintf(progress, "built in %v\n", time.Since(start).Round(100*time.Millisecond))
	return out, nil
}
