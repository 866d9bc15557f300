# Developer tasks. `make` lists them.

CARGO ?= cargo
# Kept outside the clone so that CI and fresh clones on one machine reuse the build.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/medianest-operator/target

.PHONY: help build crds fmt lint unit test demo e2e-up e2e-down bench

help: ## List the tasks
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build the operator
	$(CARGO) build --locked

crds: ## Regenerate crds/crds.yaml from the Rust types
	$(CARGO) run --locked --quiet -- crds > crds/crds.yaml

fmt: ## Format the code
	$(CARGO) fmt

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets --features fail-points -- -D warnings

unit: ## Run the tests that need no cluster
	$(CARGO) test --locked --lib --bins --features fail-points

test: ## Run every test; starts the local control plane when none is running
	e2e/with-control-plane.sh $(CARGO) test --locked --all-targets --features fail-points

demo: ## Start a control plane, apply the examples, run the operator and show a drift correction
	e2e/demo.sh

bench: ## Print controller figures (convergence, drift latency, requests, memory) against the local control plane
	e2e/with-control-plane.sh $(CARGO) bench --locked --bench controller

e2e-up: ## Start the local control plane (prints the KUBECONFIG export)
	e2e/control-plane.sh up

e2e-down: ## Stop the local control plane and delete its state
	e2e/control-plane.sh down
