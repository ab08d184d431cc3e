package cloud_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
)

// start serves a Cloud with opts over httptest and returns a client.
func start(t *testing.T, opts cloud.Options) (*cloud.Cloud, *cloud.Client) {
	t.Helper()
	c, err := cloud.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return c, cloud.NewClient(srv.URL, cloud.ClientOptions{Token: opts.Token})
}

// echoServer listens on addr and answers each line with "<name>: <line>".
func echoServer(t *testing.T, addr, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "%s: %s", name, line)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "hello\n")
	return bufio.NewReader(c).ReadString('\n')
}

// eventually polls f every 20 ms until it returns nil or 10 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond) // a real network: poll
	}
}

func TestLoadBalancerServesAndSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	opts := cloud.Options{
		StatePath:      state,
		Token:          "secret",
		AddressRange:   netip.MustParsePrefix("127.0.123.0/28"),
		ProvisionDelay: 5 * time.Second,
		HealthInterval: 50 * time.Millisecond,
		Clock:          clk,
	}
	c, client := start(t, opts)
	ctx := t.Context()
	node := echoServer(t, "127.0.124.1:0", "node-1")
	created, err := client.CreateLoadBalancer(ctx, &cloud.LoadBalancer{
		Name:        "lb-1",
		Tags:        map[string]string{"owner": "me"},
		Listeners:   []cloud.Listener{{Protocol: "TCP", Port: 8080, NodePort: int32(node.Port())}},
		Targets:     []cloud.Target{{ID: "i-1", Addresses: []string{node.Addr().String()}}},
		HealthCheck: cloud.HealthCheck{Protocol: cloud.HealthTCP},
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status != cloud.LBProvisioning || len(created.Addresses) != 1 || created.Addresses[0] != "127.0.123.1" {
		t.Fatalf("created %+v, want provisioning on 127.0.123.1", created)
	}
	// A second create of the name is refused with the existing one.
	_, err = client.CreateLoadBalancer(ctx, &cloud.LoadBalancer{Name: "lb-1", Listeners: created.Listeners})
	var ae *cloud.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || ae.Code != cloud.CodeNameInUse || ae.LoadBalancer == nil || ae.LoadBalancer.ID != created.ID {
		t.Fatalf("second create: %v, want 409 NameInUse with %s", err, created.ID)
	}
	clk.Step(5 * time.Second)
	got, err := client.GetLoadBalancer(ctx, created.ID)
	if err != nil || got.Status != cloud.LBActive {
		t.Fatalf("after the delay: %+v, %v; want active", got, err)
	}
	lbAddr := "127.0.123.1:8080"
	eventually(t, "traffic through the load balancer", func() error {
		answer, err := ask(lbAddr)
		if err == nil && answer != "node-1: hello\n" {
			err = fmt.Errorf("answer %q", answer)
		}
		return err
	})

	// The cloud restarts from its state file and serves again.
	c.Close()
	c2, client2 := start(t, opts)
	defer c2.Close()
	again, err := client2.GetLoadBalancer(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got.Addresses, again.Addresses); d != "" || again.Status != cloud.LBActive {
		t.Fatalf("after restart: status %s, addresses (-want +got):\n%s", again.Status, d)
	}
	eventually(t, "traffic after the cloud restarted", func() error {
		_, err := ask(lbAddr)
		return err
	})
	eventually(t, "health result", func() error {
		l, err := client2.GetLoadBalancer(ctx, created.ID)
		if err == nil && l.Health[fmt.Sprintf("i-1/%d", node.Port())] != "healthy" {
			err = fmt.Errorf("health %v", l.Health)
		}
		return err
	})

	if err := client2.DeleteLoadBalancer(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := client2.GetLoadBalancer(ctx, created.ID); !cloud.IsNotFound(err) {
		t.Fatalf("after delete: %v, want 404", err)
	}
	eventually(t, "listener closed after delete", func() error {
		if _, err := ask(lbAddr); err == nil {
			return errors.New("still serving")
		}
		return nil
	})
}

func TestHoldAndTokenAndRoutes(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	_, client := start(t, cloud.Options{Token: "t", Clock: clk, MaxRoutes: 1, DisableDataPlane: true})
	ctx := t.Context()
	if err := cloud.NewClient(tokenCloudURL(t), cloud.ClientOptions{}).Hold(ctx, "x"); err == nil {
		t.Fatal("a request without the token succeeded")
	}
	if err := client.Hold(ctx, "*"); err != nil {
		t.Fatal(err)
	}
	l, err := client.CreateLoadBalancer(ctx, &cloud.LoadBalancer{Name: "a", Listeners: []cloud.Listener{{Protocol: "TCP", Port: 1, NodePort: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != cloud.LBProvisioning || l.Message != "held" {
		t.Fatalf("held create: %s %q", l.Status, l.Message)
	}
	if err := client.Release(ctx, "*"); err != nil {
		t.Fatal(err)
	}
	if l, _ = client.GetLoadBalancer(ctx, l.ID); l.Status != cloud.LBActive {
		t.Fatalf("released: %s", l.Status)
	}
	r := &cloud.Route{Name: "c--n1-v4", Cluster: "c", Destination: "10.244.1.0/24", Target: "n1"}
	for range 2 {
		if err := client.PutRoute(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	err = client.PutRoute(ctx, &cloud.Route{Name: "c--n2-v4", Cluster: "c", Destination: "10.244.2.0/24", Target: "n2"})
	var ae *cloud.APIError
	if !errors.As(err, &ae) || ae.Code != cloud.CodeTableFull || ae.Limit != 1 {
		t.Fatalf("second route: %v, want RouteTableFull with limit 1", err)
	}
}

// tokenCloudURL serves a cloud that requires a token.
func tokenCloudURL(t *testing.T) string {
	t.Helper()
	c, err := cloud.New(cloud.Options{Token: "t", DisableDataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}
