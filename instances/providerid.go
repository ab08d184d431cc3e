package instances

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidProviderID is wrapped by ParseProviderID's errors.
var ErrInvalidProviderID = errors.New("invalid provider ID")

// FormatProviderID returns "<provider>://<id>", the Node spec.providerID of
// instance id. It does not validate; ParseProviderID(provider, result)
// returns id for every id it accepts.
func FormatProviderID(provider, id string) string { return provider + "://" + id }

// ParseProviderID returns the instance ID in providerID, which must be
// "<provider>://<id>" with a non-empty id made of printable, non-space
// characters (slashes allowed, as in "aws:///us-east-1a/i-0abc"). Otherwise
// it returns an error wrapping ErrInvalidProviderID that says what is wrong.
func ParseProviderID(provider, providerID string) (string, error) {
	if provider == "" {
		return "", fmt.Errorf("%w %q: provider name is empty", ErrInvalidProviderID, providerID)
	}
	scheme, id, ok := strings.Cut(providerID, "://")
	switch {
	case !ok:
		return "", fmt.Errorf("%w %q: want %q followed by the instance ID", ErrInvalidProviderID, providerID, provider+"://")
	case scheme != provider:
		return "", fmt.Errorf("%w %q: belongs to provider %q, not %q", ErrInvalidProviderID, providerID, scheme, provider)
	case strings.Trim(id, "/") == "":
		return "", fmt.Errorf("%w %q: no instance ID after %q", ErrInvalidProviderID, providerID, provider+"://")
	}
	if !utf8.ValidString(id) {
		return "", fmt.Errorf("%w %q: instance ID is not valid UTF-8", ErrInvalidProviderID, providerID)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return "", fmt.Errorf("%w %q: instance ID contains %q", ErrInvalidProviderID, providerID, r)
		}
	}
	return id, nil
}
