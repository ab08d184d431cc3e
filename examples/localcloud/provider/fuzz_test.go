package provider_test

import (
	"errors"
	"testing"

	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
)

// FuzzParseConfig checks that ParseConfig never panics, wraps
// ErrInvalidConfig in every error, and accepts only configurations with an
// http(s) endpoint and a token.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"endpoint": "http://127.0.0.1:8900", "token": "t"}`,
		`{"endpoint": "https://cloud.example:443", "token": "t", "timeout": "5s", "loadBalancerAddresses": "127.0.100.1-127.0.100.254", "loadBalancerPollInterval": "1s"}`,
		`{"endpoint": "http://127.0.0.1:8900", "token": "t", "loadBalancerAddresses": "127.0.100.0/24,127.0.101.5"}`,
		`{"endpoint": "ftp://x", "token": "t"}`,
		`{"endpoint": "http://x", "token": ""}`,
		`{"endpoint": "http://x", "token": "t", "timeout": "-1s"}`,
		`{"endpoint": "http://x", "token": "t", "tokn": "typo"}`,
		`{"endpoint": "http://x", "token": "t"} trailing`,
		`{"endpoint": "http://x", "token": "t", "loadBalancerAddresses": "300.0.0.1"}`,
		``, `null`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := provider.ParseConfig(data)
		if err != nil {
			if !errors.Is(err, provider.ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if c.Endpoint == "" || c.Token == "" {
			t.Fatalf("accepted %q without an endpoint or a token", data)
		}
	})
}
