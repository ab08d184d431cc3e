package cloud_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
)

// FuzzParseState checks that ParseState never panics, that every error
// wraps ErrInvalidState, and that an accepted state saves and parses back.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(``))
	f.Add([]byte(`{"version":1,"nextID":1}`))
	f.Add([]byte(`{"version":1,"nextID":3,"instances":{"i-1":{"id":"i-1","name":"n1","state":"running","addresses":[{"type":"InternalIP","address":"127.0.1.1"}],"podCIDRs":["10.244.1.0/24"]}},` +
		`"loadBalancers":{"lb-000001":{"id":"lb-000001","name":"ccmkit-x","listeners":[{"protocol":"TCP","port":80,"nodePort":30080}],"healthCheck":{"protocol":"http","port":10256,"path":"/healthz"},"status":"active","addresses":["127.0.100.1"]}},` +
		`"routes":{"c--u-v4":{"name":"c--u-v4","cluster":"c","destination":"10.244.1.0/24","target":"n1"}},"holds":["*"]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"nextID":1,"loadBalancers":{"a":{"id":"b"}}}`))
	f.Add([]byte(`{"version":1,"nextID":1} {}`))
	f.Add([]byte(`{"version":1,"nextID":1,"routes":{"r":{"name":"r","destination":"10.0.0.1/8","target":"n"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := cloud.ParseState(data)
		if err != nil {
			if !errors.Is(err, cloud.ErrInvalidState) {
				t.Fatalf("error %v does not wrap ErrInvalidState", err)
			}
			return
		}
		path := filepath.Join(t.TempDir(), "state.json")
		if err := s.Save(path); err != nil {
			t.Fatal(err)
		}
		if _, err := cloud.LoadState(path); err != nil {
			t.Fatalf("an accepted state does not load back: %v", err)
		}
	})
}
