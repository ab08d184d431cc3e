package readme

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// TestReadmeCompiles builds the README quickstart (main.go, api.go,
// backend.go) and runs its tests, as a new provider author would paste
// them.
func TestReadmeCompiles(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files, tests int
	for _, m := range goBlock.FindAllSubmatch(readme, -1) {
		src := m[1]
		if !bytes.HasPrefix(src, []byte("package main\n")) {
			continue
		}
		name := "file" + string(rune('a'+files+tests)) + ".go"
		if bytes.Contains(src, []byte("\nfunc Test")) {
			name = strings.TrimSuffix(name, ".go") + "_test.go"
			tests++
		} else {
			files++
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if files < 3 || tests < 1 {
		t.Fatalf("README has %d package-main files and %d test files; want the quickstart's three and its tests", files, tests)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod := regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(gomod, []byte("module example.com/quickstart"))
	mod = append(mod, []byte("\nrequire github.com/ccmkit/ccmkit v0.0.0\n\nreplace github.com/ccmkit/ccmkit => "+root+"\n")...)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"vet", "."}, {"test", "-count=1", "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s in the README's scratch module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
