package ctrlplane

import (
	"testing"
	"time"
)

// StartForTest starts a control plane for t in t.TempDir() (unless
// opts.Dir is set) and stops it in t.Cleanup, which also prints the end of
// both processes' logs if t failed. It fails t (t.Fatal, never a skip) if the
// control plane does not start, and in particular when the binaries are
// missing: run `make controlplane`.
func StartForTest(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	start := time.Now()
	cp, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ctrlplane: ready in %v (etcd %v, kube-apiserver %v) at %s; logs in %s",
		time.Since(start).Round(time.Millisecond), cp.etcdReady.Round(time.Millisecond),
		cp.apiserverReady.Round(time.Millisecond), cp.Host(), cp.Dir())
	t.Cleanup(func() {
		err := cp.Stop()
		if err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, p := range []*process{cp.etcd, cp.apiserver} {
				t.Logf("ctrlplane: the end of %s:\n%s", p.logPath, tail(p.logPath, tailBytes))
			}
		}
	})
	return cp
}
