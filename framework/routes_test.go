package framework_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	fakecloudprovider "k8s.io/cloud-provider/fake"

	"github.com/ccmkit/ccmkit/framework"
	ccmroutes "github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func TestWithRoutesMisuse(t *testing.T) {
	table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{})
	_, err := framework.NewBuilder("fake").
		WithRoutes(table.Batch(), ccmroutes.Options{}).
		WithUpstreamRoutes(&fakecloudprovider.Cloud{}).
		Build()
	require.ErrorIs(t, err, framework.ErrBuild)
	assert.ErrorContains(t, err, "WithRoutes and WithUpstreamRoutes")

	_, err = framework.NewBuilder("fake").WithRoutes(nil, ccmroutes.Options{}).WithRoutes(table.Batch(), ccmroutes.Options{Limit: -1}).Build()
	assert.ErrorContains(t, err, "nil Backend")
	assert.ErrorContains(t, err, "WithRoutes called twice")
}

func TestWithRoutesProvider(t *testing.T) {
	table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{})
	p, err := framework.NewBuilder("fake").WithRoutes(table.Batch(), ccmroutes.Options{}).Build()
	require.NoError(t, err)
	r, ok := p.Routes()
	require.True(t, ok)
	assert.Same(t, p.RouteAdapter(), r)
	assert.True(t, p.RouteAdapter().Batched())
	assert.NotEmpty(t, p.Collectors())
}
