# Developer entry points. CI runs .ci/run (make ci); every target here is a
# plain go command you can also type yourself.

GO        ?= go
FUZZTIME  ?= 20s
FUZZ_PKGS ?= ./instances ./ipam

.DEFAULT_GOAL := test
.PHONY: test vet fmt-check staticcheck bench bench-ipam fuzz ci

# The README's test command: the root module only (bench/ and tools/ are
# nested modules, which ./... leaves out).
test:
	$(GO) test -race ./...

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

fmt-check:
	@files=$$(find . -path ./.git -prune -o -name testdata -prune -o -type f -name '*.go' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

# staticcheck is pinned as a Go tool in tools/go.mod.
staticcheck:
	$(GO) tool -modfile=tools/go.mod staticcheck ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./instances/

# ccmkit's ipam against upstream's allocators (nested module bench/; its first
# build compiles parts of k8s.io/kubernetes).
bench-ipam:
	cd bench && $(GO) test -run '^$$' -bench . -benchmem

# Each fuzz target in FUZZ_PKGS for FUZZTIME; go test -fuzz takes one target
# per run.
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

ci:
	./.ci/run
