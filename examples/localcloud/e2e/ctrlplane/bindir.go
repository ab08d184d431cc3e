package ctrlplane

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotBuilt is wrapped by the error [Start] returns when etcd or
// kube-apiserver is missing from the bin directory.
var ErrNotBuilt = errors.New(`control plane binary not built (run "make controlplane" in the ccmkit repository; the first build is cold and takes minutes)`)

// BinDirEnv names the environment variable that overrides the default bin
// directory. The Makefile's controlplane target builds into the same
// directory.
const BinDirEnv = "CCMKIT_CTRLPLANE_BIN"

// Binary names inside the bin directory.
const (
	EtcdBinary      = "etcd"
	APIServerBinary = "kube-apiserver"
)

const repoModule = "github.com/ccmkit/ccmkit"

// DefaultBinDir returns $CCMKIT_CTRLPLANE_BIN if it is set, else the bin/
// directory of the ccmkit repository that contains the working directory
// (go test runs a test binary in its package's directory). It does not check
// that the directory exists.
func DefaultBinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("ctrlplane: default bin directory: %w", err)
	}
	for dir := wd; ; {
		if isRepoRoot(dir) {
			return filepath.Join(dir, "bin"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("ctrlplane: no default bin directory: %s is not inside the ccmkit repository (module %s); set Options.BinDir or $%s", wd, repoModule, BinDirEnv)
}

// isRepoRoot reports whether dir holds the go.mod of the ccmkit module
// (nested modules such as tools/ctrlplane have their own go.mod and path).
func isRepoRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == repoModule
		}
	}
	return false
}

// lookBinaries returns the paths of etcd and kube-apiserver in binDir, or an
// error wrapping ErrNotBuilt that names every one missing.
func lookBinaries(binDir string) (etcd, apiserver string, err error) {
	var errs []error
	look := func(name string) string {
		path := filepath.Join(binDir, name)
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s: not an executable file", path))
		}
		return path
	}
	etcd, apiserver = look(EtcdBinary), look(APIServerBinary)
	if len(errs) > 0 {
		return "", "", fmt.Errorf("ctrlplane: %w: in %s: %w", ErrNotBuilt, binDir, errors.Join(errs...))
	}
	return etcd, apiserver, nil
}
