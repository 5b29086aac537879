# refrouter — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -euc
.DEFAULT_GOAL := help

GO      ?= go
PKGS    := ./...
BIN     := bin/refrouter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/refrouter
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/refrouter

.PHONY: run
run: build ## start the three-region demo cluster on 127.0.0.1 (Ctrl-C stops it)
	./$(BIN) demo

.PHONY: test
test: vet ## vet, then every test with the race detector and invariant checks (real PostgreSQL, raft, memberlist)
	$(GO) test -race -count=1 -tags invariants -timeout 12m $(PKGS)
	# tests that hold only without the race detector (allocation counts, the edge's buffer pool)
	$(GO) test -count=1 -timeout 5m -run 'Allocs|Buffers' ./edgehttp ./node ./links ./bots ./geo ./clientip ./routing ./rules
	cd deploy && $(GO) test -count=1 -timeout 5m ./...

.PHONY: vet
vet: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: smoke
smoke: ## the API contract check against `refrouter demo` (needs ../shared, curl, jq)
	bash ../shared/checks/contract-smoke.sh

.PHONY: fuzz
fuzz: ## run every fuzz target (both modules: the root and deploy/) for FUZZTIME each
	@for mod in . deploy; do \
	  for pkg in $$(cd $$mod && $(GO) list ./...); do \
	    for f in $$(cd $$mod && $(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	      echo "== $$pkg $$f"; (cd $$mod && $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg) || exit 1; \
	    done; \
	  done; \
	done

.PHONY: bench
bench: build ## Go benchmarks (benchstat-ready) and the redirect comparison against nginx and bare fasthttp
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./edgehttp ./links ./bots ./geo ./clientip ./routing ./node ./ledger | tee bench-go.txt
	bash scripts/bench-redirect.sh

.PHONY: bench-once
bench-once: ## every benchmark once (what CI runs)
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

.PHONY: lint
lint: vet ## go vet and staticcheck (the version pinned in go.mod's tool directive)
	$(GO) tool staticcheck $(PKGS)

.PHONY: tidy
tidy: ## go mod tidy; fails when go.mod or go.sum change
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

.PHONY: check
check: vet test smoke ## everything CI runs

-include deploy/deploy.mk
