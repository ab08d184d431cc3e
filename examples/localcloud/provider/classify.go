package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
)

// classify maps the SDK's errors to cloudcall's classes: 404 not found;
// 429, or any status with Retry-After, throttled; 5xx transient; other
// 4xx permanent; a request that failed in transport (the cloud restarting,
// a timeout) transient. A cancelled or expired context is returned as is.
func classify(err error) error {
	var ae *cloud.APIError
	var ue *url.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !isTimeout(err):
		return err
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		return cloudcall.NotFound(err)
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusTooManyRequests || ae.RetryAfter > 0):
		return cloudcall.Throttled(ae.RetryAfter, err)
	case errors.As(err, &ae) && ae.StatusCode >= 500:
		return cloudcall.Transient(err)
	case errors.As(err, &ae):
		return cloudcall.Permanent(err)
	case errors.As(err, &ue):
		return cloudcall.Transient(err)
	}
	return cloudcall.Permanent(err)
}

// isTimeout reports whether err is the HTTP client's own timeout.
func isTimeout(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) && ue.Timeout()
}
