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
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
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
