package conformance_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/conformance"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func fakeFixture(t *testing.T) conformance.InstancesFixture {
	t.Helper()
	cloud := fakecloud.New(fakecloud.Options{})
	known := []instances.Instance{
		fakecloud.NewInstance("i-1", "node-1", "10.0.0.1"),
		fakecloud.NewInstance("i-2", "node-2", "10.0.0.2"),
		fakecloud.NewInstance("i-3", "node-3", "10.0.0.3"),
	}
	known[1].State = instances.StateStopped
	known[2].State = instances.StateTerminated
	for _, inst := range known {
		require.NoError(t, cloud.AddInstance(inst))
	}
	return conformance.InstancesFixture{
		Source:          cloud.Instances(),
		Known:           known,
		MissingID:       "i-missing",
		MissingNodeName: "node-missing",
	}
}

func TestFakeCloudInstances(t *testing.T) {
	conformance.RunInstances(t, fakeFixture)
}

// A backend that answers (nil, nil) for a missing instance breaks the
// contract; the suite must say so.
func TestInstancesReportsViolations(t *testing.T) {
	f := fakeFixture(t)
	good := f.Source
	f.Source = instances.SourceFunc(func(ctx context.Context, key instances.Key) (*instances.Instance, error) {
		if key.ID == "i-missing" {
			return nil, nil
		}
		return good.Lookup(ctx, key)
	})
	err := conformance.TestInstances(t.Context(), f)
	require.Error(t, err)
	require.ErrorContains(t, err, "missing-is-not-found")
	require.False(t, errors.Is(err, context.Canceled))
}
