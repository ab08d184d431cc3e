# Developer entry points. CI runs .ci/run (make ci); every target here is a
# plain go command you can also type yourself.

GO        ?= go
FUZZTIME  ?= 20s
FUZZ_PKGS ?= ./instances ./ipam ./ipam/nodeipam ./lb ./routes ./examples/localcloud/cloud ./examples/localcloud/provider

.DEFAULT_GOAL := test
.PHONY: test vet fmt-check staticcheck bench bench-ipam fuzz ci controlplane demo

# The README's test command: the root module only (bench/ and tools/ are
# nested modules, which ./... leaves out), after building the control plane
# that its end-to-end tests start.
test: controlplane
	$(GO) test -race ./...

# etcd and kube-apiserver for end-to-end tests, built from the Go module proxy
# by the nested module tools/ctrlplane (versions pinned in its go.mod) into
# CCMKIT_CTRLPLANE_BIN, which tests read (gitignored bin/ by default). The version
# stamp is Kubernetes' own (else /version says v0.0.0-master); no -trimpath
# and no VCS stamp, so warm builds reuse the cache and relink nothing.
CCMKIT_CTRLPLANE_BIN ?= $(CURDIR)/bin
KUBE_VERSION   = $(shell cd tools/ctrlplane && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
# kube_stamp is the -X flags that stamp Kubernetes version $(1) (vX.Y.Z) into
# component-base and client-go (the Version log line, kubernetes_build_info,
# the User-Agent).
kube_stamp     = $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(1) -X $(p).gitMajor=$(word 1,$(subst ., ,$(patsubst v%,%,$(1)))) \
	-X $(p).gitMinor=$(word 2,$(subst ., ,$(patsubst v%,%,$(1)))) -X $(p).gitTreeState=clean)
KUBE_LDFLAGS   = -s -w $(call kube_stamp,$(KUBE_VERSION))
# The example binaries carry the Kubernetes version of the libraries they
# are built with (k8s.io/component-base v0.X.Y is Kubernetes v1.X.Y), as the
# e2e tests' build does (examples/localcloud/e2e/stack); a provider would
# stamp its release version.
EXAMPLE_KUBE_VERSION = $(patsubst v0.%,v1.%,$(shell $(GO) list -m -f '{{.Version}}' k8s.io/component-base))

controlplane:
	@test -x $(CCMKIT_CTRLPLANE_BIN)/kube-apiserver -a -x $(CCMKIT_CTRLPLANE_BIN)/etcd || \
		echo "controlplane: first build of kube-apiserver and etcd into $(CCMKIT_CTRLPLANE_BIN): a cold build takes about 8 minutes on 2 cores, later ones seconds"
	cd tools/ctrlplane && $(GO) build -buildvcs=false -ldflags '$(KUBE_LDFLAGS)' -o $(CCMKIT_CTRLPLANE_BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd tools/ctrlplane && $(GO) build -buildvcs=false -ldflags '-s -w' -o $(CCMKIT_CTRLPLANE_BIN)/etcd go.etcd.io/etcd/server/v3

# The example provider end to end (examples/localcloud): the control plane
# (cold: about 8 minutes), then the example's binaries and the demo (go build
# -v lists each package it compiles: a cold build compiles the Kubernetes
# libraries), then the demo itself, which removes what it started when it
# ends, fails or is interrupted (Ctrl-C). DEMO_FLAGS=-stay keeps it running
# until Ctrl-C; DEMO_FLAGS=-keep keeps its logs.
demo: controlplane
	@echo "demo: building localcloud, localcloud-ccm and demo into $(CCMKIT_CTRLPLANE_BIN) (a cold build takes a few minutes, a warm one seconds)"
	$(GO) build -v -ldflags '$(call kube_stamp,$(EXAMPLE_KUBE_VERSION))' -o $(CCMKIT_CTRLPLANE_BIN)/ ./examples/localcloud/cmd/localcloud ./examples/localcloud/cmd/localcloud-ccm ./examples/localcloud/cmd/demo
	$(CCMKIT_CTRLPLANE_BIN)/demo --bin-dir=$(CCMKIT_CTRLPLANE_BIN) $(DEMO_FLAGS)

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

fmt-check:
	@files=$$(find . -path ./.git -prune -o -name testdata -prune -o -type f -name '*.go' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

# staticcheck is pinned as a Go tool in tools/go.mod.
staticcheck:
	$(GO) tool -modfile=tools/go.mod staticcheck ./...

# The blocks' benchmarks, each side by side with its upstream reference.
BENCH_PKGS ?= ./instances/ ./lb/ ./routes/

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCH_PKGS)

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
