# kubedirect: `make demo` runs the main job, `make test` runs the tests (both install what they need).
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin/kubedirect

.PHONY: all build test unit root-tests lint generate bench e2e demo tools clean

all: build

tools:
	@hack/ensure-tools.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/kubedirect

## test: lint, unit tests, then the root tests (BPF programs in the kernel, the namespace lab).
test: tools lint unit root-tests

unit:
	$(GO) test -count=1 -skip '^TestRoot' ./...

# The tests named TestRoot* need root and the kernel; as root they run here, otherwise they skip.
root-tests:
	@if [ "$$(id -u)" = 0 ]; then $(GO) test -count=1 -p 1 -run '^TestRoot' -v ./... 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}; \
	else echo "root-tests: not root, the TestRoot* tests skip"; fi

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## generate: rebuild the BPF objects and their Go bindings (needs clang, llvm, libbpf-dev).
generate: tools
	$(GO) generate ./bpf/...

## demo: the main job, create the example cluster on kind.
demo: build
	$(BIN) create cluster -f examples/kind.yaml

clean:
	rm -rf bin
