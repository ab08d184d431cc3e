package fakecloud

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// The core's crash points, with a write effect as the lb and routes backends
// will have: a fault with After applies once the resource exists.
func TestCrashPointAppliesAfterTheEffect(t *testing.T) {
	const opCreate Op = "CreateThing"
	synctest.Test(t, func(t *testing.T) {
		f := newFaults(clocktesting.NewFakeClock(time.Unix(0, 0)), 1, 0)
		created := 0
		create := func(ctx context.Context) error {
			return f.call(ctx, opCreate, "thing", func() error { created++; return nil })
		}
		boom := cloudcall.Transient(errors.New("502"))

		f.inject(opCreate, Fault{Err: boom, Times: 1})
		require.ErrorIs(t, create(t.Context()), boom)
		assert.Zero(t, created, "a fault without After fails the call before its effect")

		f.inject(opCreate, Fault{Err: boom, After: true, Times: 1})
		require.ErrorIs(t, create(t.Context()), boom)
		assert.Equal(t, 1, created, "a crash point fails the call after its effect")

		f.inject(opCreate, Fault{Hang: true, After: true, Times: 1})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		require.ErrorIs(t, create(ctx), context.DeadlineExceeded)
		assert.Equal(t, 2, created, "the resource exists though the call timed out")

		require.NoError(t, create(t.Context()))
		assert.Equal(t, 3, created)
		assert.Equal(t, 4, f.counts[opCreate])
	})
}

func TestHistoryKeepsOnlyVisibleVersions(t *testing.T) {
	h := newHistory[int]()
	t0 := time.Unix(100, 0)
	one, two := 1, 2
	h.put("a", t0, 0, &one)
	h.put("a", t0.Add(time.Second), 0, &two)
	assert.Len(t, h.versions["a"], 1, "without lag only the latest version is kept")
	h.put("a", t0.Add(2*time.Second), 0, nil)
	assert.NotContains(t, h.versions, "a", "a deleted key with no visible past is dropped")

	h.put("b", t0, 5*time.Second, &one)
	h.put("b", t0.Add(time.Second), 5*time.Second, &two)
	h.put("b", t0.Add(10*time.Second), 5*time.Second, nil)
	assert.Len(t, h.versions["b"], 2, "the version visible at now-lag and the newer ones stay")
	assert.Equal(t, 2, *h.at("b", t0.Add(5*time.Second)))
	assert.Nil(t, h.at("b", t0.Add(10*time.Second)))
	assert.Nil(t, h.current("b"))
}
