package provider_test

import (
	"net/netip"

	"github.com/ccmkit/ccmkit/instances"
)

func instancesKey(id string) instances.Key { return instances.Key{ID: id} }

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
