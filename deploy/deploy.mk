# deploy.mk: deployment targets, included by the top-level Makefile
# (`-include deploy/deploy.mk`); paths are relative to the repository root.
#   make image          build the container image where a Docker engine runs;
#                       where none runs, say so and exit 1 (nothing was built)
#   make cluster-netns  three-region cluster in network namespaces (root)
#   make deploy-test    the deploy module's tests (manifests, unit, image, netns)

DOCKER        ?= docker
IMAGE         ?= refrouter:$(or $(VERSION),dev)
DEPLOY_GO     ?= $(or $(GO),go)

.PHONY: image
image: ## build the container image (needs a running Docker engine)
	@if ! $(DOCKER) info >/dev/null 2>&1; then \
	  echo "no Docker engine running here; Dockerfile at deploy/container/Dockerfile" >&2; \
	  echo "(build elsewhere: docker build -f deploy/container/Dockerfile -t $(IMAGE) .)" >&2; \
	  exit 1; \
	fi
	DOCKER_BUILDKIT=1 $(DOCKER) build -f deploy/container/Dockerfile \
	  --build-arg VERSION=$(or $(VERSION),dev) -t $(IMAGE) .

.PHONY: cluster-netns
cluster-netns: ## three-region cluster, one network namespace per node (root; Ctrl-C stops and cleans up)
	CGO_ENABLED=0 $(DEPLOY_GO) build -o bin/refrouter ./cmd/refrouter
	bash deploy/netns/cluster.sh bin/refrouter

.PHONY: deploy-test
deploy-test: ## deploy module tests (the netns partition test runs as root; REFROUTER_NETNS_TEST=0 switches it off)
	cd deploy && $(DEPLOY_GO) vet ./... && $(DEPLOY_GO) test -race -count=1 -timeout 5m ./...
