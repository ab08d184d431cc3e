// Command localcloud serves the example provider's local cloud
// (package github.com/ccmkit/ccmkit/examples/localcloud/cloud) on loopback:
// instances, load balancers that proxy real TCP traffic, and a route table,
// with its state in a JSON file.
//
//	localcloud --listen=127.0.0.1:8900 --state=localcloud.json --token=secret \
//	  --address-range=127.0.100.0/24 --provision-delay=2s
//
// It prints "localcloud: serving on http://ADDR" once it accepts requests,
// and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localcloud:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8900", "address of the API (host:port; port 0 picks a free one)")
	state := flag.String("state", "localcloud.json", "state file (created if missing; empty: in memory only)")
	token := flag.String("token", "", "bearer token the API requires (empty: none)")
	addrRange := flag.String("address-range", cloud.DefaultAddressRange.String(), "IPv4 CIDR load-balancer addresses come from")
	provision := flag.Duration("provision-delay", 2*time.Second, "how long a new load balancer stays provisioning")
	deleteDelay := flag.Duration("delete-delay", 0, "how long a deleted load balancer stays deleting")
	health := flag.Duration("health-interval", 2*time.Second, "time between health checks of each target")
	maxRoutes := flag.Int("max-routes", 0, "route table capacity (0: unlimited)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	prefix, err := netip.ParsePrefix(*addrRange)
	if err != nil {
		return fmt.Errorf("--address-range: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := cloud.New(cloud.Options{
		StatePath:      *state,
		Token:          *token,
		AddressRange:   prefix,
		ProvisionDelay: *provision,
		DeleteDelay:    *deleteDelay,
		HealthInterval: *health,
		MaxRoutes:      *maxRoutes,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go c.Run(ctx)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("localcloud: serving on http://%s (state %s, addresses %s)\n", ln.Addr(), *state, prefix)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
