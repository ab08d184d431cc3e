package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ccmkit/ccmkit/ipam"
)

// Config is the --cloud-config file, JSON:
//
//	{
//	  "endpoint": "http://127.0.0.1:8900",
//	  "token": "secret",
//	  "timeout": "10s",
//	  "loadBalancerAddresses": "127.0.100.1-127.0.100.254",
//	  "loadBalancerPollInterval": "2s"
//	}
//
// Endpoint and token are required. Timeout bounds each API request
// (default 10s). LoadBalancerAddresses are the ranges or CIDRs the address
// pool allocates load-balancer addresses from (ipam.ParseRanges syntax;
// default: the cloud's own range, asked from its API at start, without its
// first and last address). LoadBalancerPollInterval is how soon a
// provisioning load balancer is looked at again (default 2s).
type Config struct {
	Endpoint                 string `json:"endpoint"`
	Token                    string `json:"token"`
	Timeout                  string `json:"timeout,omitempty"`
	LoadBalancerAddresses    string `json:"loadBalancerAddresses,omitempty"`
	LoadBalancerPollInterval string `json:"loadBalancerPollInterval,omitempty"`

	timeout, poll time.Duration
	ranges        []ipam.Range
}

// ErrInvalidConfig is wrapped by ParseConfig's errors.
var ErrInvalidConfig = errors.New("invalid localcloud --cloud-config")

// ParseConfig parses and checks a --cloud-config file. Unknown fields are
// errors (a misspelt field is never silently ignored). Errors wrap
// ErrInvalidConfig; it never panics.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidConfig)
	}
	var errs []error
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "":
		errs = append(errs, errors.New("endpoint is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("endpoint %q: want http://host:port or https://host:port", c.Endpoint))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("token is required"))
	}
	c.timeout, err = duration("timeout", c.Timeout, 10*time.Second)
	errs = append(errs, err)
	c.poll, err = duration("loadBalancerPollInterval", c.LoadBalancerPollInterval, 2*time.Second)
	errs = append(errs, err)
	if strings.TrimSpace(c.LoadBalancerAddresses) != "" {
		c.ranges, err = ipam.ParseRanges(c.LoadBalancerAddresses)
		if err != nil {
			errs = append(errs, fmt.Errorf("loadBalancerAddresses: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &c, nil
}

func duration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s: %w", field, err)
	case d <= 0 || d > time.Hour:
		return 0, fmt.Errorf("%s %s: want a duration in (0, 1h]", field, s)
	}
	return d, nil
}
