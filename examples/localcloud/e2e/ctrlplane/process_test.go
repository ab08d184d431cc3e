package ctrlplane

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRetryPorts(t *testing.T) {
	portTaken := &exitError{name: "etcd", log: []byte("listen tcp 127.0.0.1:4242: bind: address already in use\n")}
	crashed := &exitError{name: "etcd", log: []byte("panic: boom\n")}
	for _, tc := range []struct {
		name      string
		results   []error // attempt i returns results[i]
		wantCalls int
		wantErr   error
	}{
		{"ready at once", []error{nil}, 1, nil},
		{"port taken, then ready", []error{portTaken, portTaken, nil}, 3, nil},
		{"crash is not retried", []error{crashed}, 1, crashed},
		{"port taken every time", []error{portTaken, portTaken, portTaken, portTaken, portTaken, nil}, maxAttempts, portTaken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retryPorts(2, func(ports []int) error {
				if len(ports) != 2 || ports[0] == ports[1] {
					t.Errorf("ports = %v: want 2 distinct", ports)
				}
				calls++
				return tc.results[calls-1]
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) {
				t.Errorf("retryPorts: %d calls, err = %v; want %d calls, err = %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// A process that exits during start-up fails Start with the end of its log,
// and leaves nothing running.
func TestStartProcessExits(t *testing.T) {
	bin := t.TempDir()
	for name, script := range map[string]string{
		EtcdBinary:      "#!/bin/sh\necho 'etcd: cannot start: disk on fire' >&2\nexit 3\n",
		APIServerBinary: "#!/bin/sh\nexit 0\n",
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Start(t.Context(), Options{BinDir: bin, Dir: t.TempDir()})
	var exit *exitError
	if !errors.As(err, &exit) {
		t.Fatalf("Start: err = %v, want an *exitError", err)
	}
	if exit.name != "etcd" || !bytes.Contains(exit.log, []byte("disk on fire")) {
		t.Errorf("exitError for %s with log %q: want etcd's, with its message", exit.name, exit.log)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("first line\nsecond line\nthird\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := string(tail(path, 1<<10)), "first line\nsecond line\nthird\n"; got != want {
		t.Errorf("tail(whole) = %q, want %q", got, want)
	}
	// 15 bytes start inside "second line": the excerpt starts at the next line.
	if got, want := string(tail(path, 15)), "[...]\nthird\n"; got != want {
		t.Errorf("tail(15) = %q, want %q", got, want)
	}
}
