package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/cloudcall"
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
	known[0].ProviderID = "fake:///zone-a/i-1"
	known[0].PodCIDRs = []string{"10.244.1.0/24", "fd00:1::/64"}
	known[0].Labels = map[string]string{"example.com/pool": "default"}
	known[0].Addresses = append(known[0].Addresses, v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.1"})
	known[1].State = instances.StateStopped
	known[2].State = instances.StateTerminated
	for _, inst := range known {
		require.NoError(t, cloud.AddInstance(inst))
	}
	var removes []func()
	return conformance.InstancesFixture{
		Source:          cloud.Instances(),
		Known:           known,
		MissingID:       "i-missing",
		MissingNodeName: "node-missing",
		FailNext: func(f conformance.SDKFailure) {
			for _, remove := range removes {
				remove()
			}
			cause := fmt.Errorf("HTTP %d", f.StatusCode)
			var fault fakecloud.Fault
			switch {
			case f.StatusCode == 404:
				fault.Err = cloudcall.NotFound(cause)
			case f.RetryAfter > 0 && (f.StatusCode == 429 || f.StatusCode >= 500):
				fault.Err, fault.RetryAfter = cause, f.RetryAfter
			case f.StatusCode == 429:
				fault.Err = cloudcall.Throttled(0, cause)
			case f.StatusCode >= 500:
				fault.Err = cloudcall.Transient(cause)
			default:
				fault.Err = cloudcall.Permanent(cause)
			}
			fault.Times = 1
			removes = []func(){
				cloud.Inject(fakecloud.OpGetInstance, fault),
				cloud.Inject(fakecloud.OpListInstances, fault),
			}
		},
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

// A backend that drops the labels, and one that passes its SDK's errors
// through unclassified, are reported case by case.
func TestInstancesReportsMissingFieldsAndMisclassification(t *testing.T) {
	f := fakeFixture(t)
	good := f.Source
	f.Source = instances.SourceFunc(func(ctx context.Context, key instances.Key) (*instances.Instance, error) {
		inst, err := good.Lookup(ctx, key)
		if err != nil {
			var te *cloudcall.ThrottledError
			if errors.As(err, &te) {
				return nil, errors.New("unclassified: " + err.Error())
			}
			return nil, err
		}
		inst.Labels = nil
		return inst, nil
	})
	err := conformance.TestInstances(t.Context(), f)
	require.ErrorContains(t, err, "lookup-by-id")
	require.ErrorContains(t, err, "Labels")
	require.ErrorContains(t, err, "sdk-429-is-throttled")
	require.ErrorContains(t, err, "sdk-503-with-retry-after-is-throttled")
	require.NotContains(t, err.Error(), "sdk-404-is-not-found")
	require.NotContains(t, err.Error(), "sdk-5xx-is-transient")

	// Without the hook the classification cases do not run.
	f = fakeFixture(t)
	f.FailNext = nil
	require.NoError(t, conformance.TestInstances(t.Context(), f))
}
