# AvatarGateway: the single entry point. `make demo` runs the main job, `make test` the tests.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUF := tools/buf/node_modules/.bin/buf
STAMP := $(VENV)/.installed

.PHONY: help venv system-deps livekit jaeger helm promtool dashboard containers demo demo-compose test test-deploy test-unit test-interop clients-test lint buf-breaking format protos bench bench-latency clean

help:
	@echo "make demo        gateway in sandbox mode driving real speech through every vendor"
	@echo "make test        unit + integration (+ interop) tests over real sockets"
	@echo "make test-deploy image, compose stack and Helm chart for real (podman, helm)"
	@echo "make demo-compose the demo against the docker-compose stack"
	@echo "make lint        ruff, ruff format --check, mypy --strict, buf lint"
	@echo "make protos      regenerate the stubs of every language"
	@echo "make bench       benchmarks (writes bench/RESULTS.md)"
	@echo "make bench-latency per-turn latency per vendor, gateway vs direct (bench/RESULTS.md)"

# Python environment, pinned by constraints.txt.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -c constraints.txt -e 'clients/python[test]' -e '.[dev,sandbox,bench]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages: espeak-ng (demo speech), redis-server (registry tests). Installed only when missing.
system-deps:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || echo "warning: could not install$$missing (the demo falls back to a committed WAV)"; \
	fi

$(BUF): tools/buf/package.json
	cd tools/buf && npm install --no-audit --no-fund --silent
	touch $(BUF)

# livekit-server for the Akool sandbox and tests, built from its Go module (pinned) into .cache/bin.
livekit:
	bash tools/build_livekit.sh

# Jaeger (OTLP receivers, in-memory storage, query API) for the tracing test, built from its Go
# module (pinned by tools/jaeger/go.mod) into .cache/bin.
jaeger:
	bash tools/build_jaeger.sh

# promtool for checking and unit-testing deploy/observability/alerts.yaml, built from
# Prometheus's Go module (pinned) into .cache/bin.
promtool:
	bash tools/build_promtool.sh

# The Grafana dashboard deploy/observability/avatar-gateway.json, from dashboard.py.
dashboard: venv
	$(VPY) deploy/observability/dashboard.py

# helm for linting and rendering deploy/helm/avatar-gateway, built from its Go module (pinned) into .cache/bin.
helm:
	bash tools/build_helm.sh

demo: venv system-deps livekit
	$(VPY) demo/demo.py

test: venv system-deps livekit jaeger promtool
	$(VPY) -m pytest -q -p no:cacheprovider -m "not deploy"

# podman, its configuration and a local Debian base image (no image registry is reachable here).
containers:
	bash tools/containers_setup.sh

# The image, the compose stack and the Helm chart, for real (podman, podman-compose, helm).
test-deploy: venv helm containers
	$(VPY) -m pytest -q -p no:cacheprovider -m deploy tests/deploy

# The compose stack (docker-compose.yml) up, the demo driven against it from this host, down.
COMPOSE := $(VENV)/bin/podman-compose -p avatar-gateway-demo
COMPOSE_ENV := BASE_IMAGE=$${BASE_IMAGE:-localhost/debian-python:bookworm}
CA_BUNDLE := /etc/ssl/certs/ca-certificates.crt
demo-compose: venv system-deps containers
	$(COMPOSE_ENV) $(COMPOSE) --podman-build-args='--format docker -v $(CA_BUNDLE):$(CA_BUNDLE):ro' build
	$(COMPOSE_ENV) $(COMPOSE) up -d
	trap '$(COMPOSE_ENV) $(COMPOSE) down -t 5 >/dev/null' EXIT; \
	for c in redis livekit zegocloud tencent akool gateway; do \
	  for i in $$(seq 1 120); do podman healthcheck run avatar-gateway-demo_$${c}_1 >/dev/null 2>&1 && break; sleep 1; done; \
	done; \
	$(VPY) demo/demo.py --target 127.0.0.1:50051 --emulator zegocloud=http://127.0.0.1:9101 \
	  --emulator tencent=http://127.0.0.1:9102 --emulator akool=http://127.0.0.1:9103

test-interop: venv
	$(VPY) -m pytest -q -p no:cacheprovider tests/interop

clients-test:
	cd clients/go && go vet ./... && go test ./...
	cd clients/typescript && npm ci --no-audit --no-fund && npm run build && npm test
	cd clients/java && mvn -B -q -Dmaven.repo.local=$(CURDIR)/.cache/m2 package

test-unit: venv
	$(VPY) -m pytest -q -m unit

lint: venv $(BUF)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(BUF) lint
	$(BUF) format --diff --exit-code

buf-breaking: $(BUF)
	tools/buf_breaking.sh

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: venv
	tools/gen_clients.sh

# Writes bench/RESULTS.md and bench/results/run_bench.json, then draws bench/plots/*.png.
bench: venv
	$(VPY) bench/run_bench.py
	$(VPY) bench/plots.py

# Conversational latency per vendor, gateway against a direct client (bench/latency_bench.py):
# writes its block of bench/RESULTS.md and bench/results/latency_bench.json, then the plots.
bench-latency: venv livekit
	$(VPY) bench/latency_bench.py
	$(VPY) bench/plots.py

clean:
	rm -rf $(VENV) .cache tools/buf/node_modules clients/typescript/node_modules clients/typescript/dist clients/java/target
