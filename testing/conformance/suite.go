package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// conformanceCase is one case of a suite over fixtures of type F: the rule
// it checks and how.
type conformanceCase[F any] struct {
	name, rule string
	// skip, when set, returns why the case cannot run against f (a missing
	// hook or capability), or "" when it runs.
	skip  func(f F) string
	check func(ctx context.Context, f F) error
}

// suite drives a family's cases: the TestX (joined violations) and RunX
// (subtests) behaviour every family shares.
type suite[F any] struct {
	// validate rejects a fixture the cases cannot run against.
	validate func(f F) error
	cases    []conformanceCase[F]
	// runTimeout, when positive, bounds each case run by run.
	runTimeout time.Duration
}

// noFailNext is why the error-classification cases skip.
const noFailNext = "the fixture has no FailNext hook"

// needsFailNext is a skip reason for the cases that need a FailNext hook.
func needsFailNext(hook func(SDKFailure)) string {
	if hook == nil {
		return noFailNext
	}
	return ""
}

// test runs every case against a fixture from newFixture (one per case),
// leaving out the cases that skip, and returns every violation joined, each
// prefixed with the case name and rule. A fixture that does not validate
// ends the run with its error alone.
func (s suite[F]) test(ctx context.Context, newFixture func() F) error {
	var errs []error
	for _, c := range s.cases {
		f := newFixture()
		if err := s.validate(f); err != nil {
			return err
		}
		if c.skip != nil && c.skip(f) != "" {
			continue
		}
		if err := c.check(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", c.name, c.rule, err))
		}
	}
	return errors.Join(errs...)
}

// run runs every case as a subtest named after it, each with a fresh
// fixture from newFixture: a fixture that does not validate fails the
// subtest, a case that skips is skipped with the reason, and a violation is
// reported with the rule.
func (s suite[F]) run(t *testing.T, newFixture func(t *testing.T) F) {
	t.Helper()
	for _, c := range s.cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if err := s.validate(f); err != nil {
				t.Fatal(err)
			}
			if c.skip != nil {
				if why := c.skip(f); why != "" {
					t.Skip(why)
				}
			}
			ctx := t.Context()
			if s.runTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, s.runTimeout)
				defer cancel()
			}
			if err := c.check(ctx, f); err != nil {
				t.Errorf("rule: %s\n%v", c.rule, err)
			}
		})
	}
}
