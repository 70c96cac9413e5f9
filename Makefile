# kubedirect: `make demo` runs the main job, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin/kubedirect

.PHONY: all build test unit root-tests fuzz fuzz-short lint golangci-lint generate generate-check bench bench-bpf bench-lab e2e e2e-aws demo node-image docker-down tools clean

all: build

tools:
	@hack/ensure-tools.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/kubedirect

## test: everything CI runs: lint, generated code check, unit tests, root tests (BPF in the kernel,
## the namespace lab), a short run of every fuzz target, then the kind clusters end to end.
test: tools lint generate-check unit root-tests fuzz-short e2e

## unit: tests that need no root (TestRoot* and FuzzRoot* are skipped here and run by root-tests).
unit:
	$(GO) test -count=1 -skip '^(TestRoot|FuzzRoot)' ./...

## root-tests: the TestRoot* tests: BPF programs in the real kernel, live traffic in network
## namespaces, the multi-node lab against a real kube-apiserver. They skip without root.
root-tests:
	@if [ "$$(id -u)" = 0 ]; then set -o pipefail; $(GO) test -count=1 -p 1 -timeout 30m -run '^(TestRoot|FuzzRoot)' -v ./... 2>&1 | grep -E '^(=== RUN|\s*--- |PASS|FAIL|ok|panic)|_test.go:|^ {8}'; \
	else echo "root-tests: not root, the TestRoot* tests skip"; fi

## fuzz-short, fuzz: every Go fuzz target (the spec loader, Service translation against a model, the BPF
## programs on random frames) for FUZZTIME each, beyond the seed corpus that unit and root-tests replay.
FUZZTIME ?= 10s
fuzz-short:
	hack/fuzz.sh $(FUZZTIME)

fuzz:
	hack/fuzz.sh 5m

## lint: gofmt, go vet, and the linters of .golangci.yml; every finding fails it.
lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(MAKE) --no-print-directory golangci-lint

## golangci-lint: the linters of .golangci.yml (staticcheck, errcheck, unused, ineffassign, govet,
## misspell, unconvert), built into the cache by hack/ensure-tools.sh on first use.
golangci-lint:
	gl=$$(hack/ensure-tools.sh --golangci-lint) && $$gl run ./...

## generate: rebuild the BPF objects and their Go bindings (needs clang, llvm, libbpf-dev).
generate: tools
	$(GO) generate ./bpf/...

## generate-check: the committed BPF objects and bindings are what the sources generate.
generate-check: generate
	@git diff --exit-code --stat -- bpf || { echo "go generate ./bpf changed the committed files: commit them"; exit 1; }

## e2e: create, validate and delete examples/kind.yaml and examples/kind-dsr.yaml on kind (a private
## Docker daemon and an offline node image when no daemon is reachable), then the AWS rehearsal.
e2e:
	hack/e2e.sh
	hack/e2e-aws.sh

## e2e-aws: the AWS rehearsal: the real create, bootstrap, validate, get, export and delete of an AWS
## cluster against moto, node containers playing the instances (hack/README.md).
e2e-aws:
	hack/e2e-aws.sh

## demo: the main job: create the example cluster on kind and validate it.
demo: tools build
	BIN=$(BIN) hack/demo.sh examples/kind.yaml

node-image:
	hack/nodeimage/build.sh

docker-down:
	hack/docker.sh down

## bench: the performance figures in the README (root).
bench: bench-bpf bench-lab

bench-bpf:
	$(GO) test ./bpf/ -run '^$$' -bench BenchmarkRootNodePortProgram -benchtime 10x -v
	$(GO) test ./bpf/ -run '^$$' -bench BenchmarkRootNodePortRemoteXDPvsTC -benchtime 3x -v

bench-lab: build
	$(BIN) lab bench --services 10000 --duration 10s --probe connect
	$(BIN) lab bench --services 10000 --duration 10s --probe http
	$(BIN) lab bench --services 10000 --duration 10s --probe wrk --workers 64

clean:
	rm -rf bin _output
