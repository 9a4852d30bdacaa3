# fleetvote: the two commands are `make run` and `make test`; everything else is a named check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
N ?=
PYTEST_ARGS ?=

.PHONY: size-report bench-firmware bench-adaptive sim-qemu help venv venv-run deps deps-run run firmware-host fuzz-codec test verify-exact check-cards bench-engine clean model qemu-startup fresh-root

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Debian packages: one script, two sets (tests/debian-packages.sh). As root it installs what is
# missing; otherwise it prints the apt-get line and stops (DEPS=skip goes on without them).
deps-run:  ## the Debian packages make run needs (python3-venv, gcc, make)
	@DEPS=$(DEPS) tests/debian-packages.sh run

deps:  ## the Debian packages make test needs (ARM toolchain, QEMU, clang, Chromium, ser2net, ...)
	@DEPS=$(DEPS) tests/debian-packages.sh test

# Two stamps: the runtime (the package alone: what `make run` serves with) and the extras
# (train, test) that make test and the offline tools add on top.
$(BIN)/.runtime: pyproject.toml | deps-run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed: $(BIN)/.runtime pyproject.toml | deps
	$(BIN)/pip install -q -e '.[train,test]'
	touch $@

venv-run: $(BIN)/.runtime  ## virtual environment with the runtime only

venv: $(BIN)/.installed  ## virtual environment with the train and test extras

run: venv-run firmware-host  ## serve on 127.0.0.1:8000 with one virtual board per ensemble member
	$(BIN)/fleetvote serve --virtual

firmware-host: venv-run  ## the virtual board (firmware core built for the host)
	$(MAKE) -C firmware BOARD=host PYTHON=$(abspath $(BIN)/python)

test: venv firmware-host  ## the whole test suite (about 10 minutes on 2 cores)
	$(BIN)/pytest -q --durations=20 $(PYTEST_ARGS)

verify-exact: venv  ## engine vs tflite-micro on every zoo model (N=500 for a subset)
	$(BIN)/fleetvote verify-exact $(if $(N),--limit $(N))

check-cards: venv  ## recompute every zoo card on all 10,000 test images
	$(BIN)/fleetvote card --check

bench-engine: venv  ## images/s of the engine vs LiteRT vs tflite-micro, as ratios
	$(BIN)/python -m fleetvote.testbed.bench_engine

model: venv  ## train (resumable) and export one zoo model: make model ID=vgg12-s31
	@test -n "$(ID)" || { echo "usage: make model ID=<id of models/recipes.json>"; exit 2; }
	$(BIN)/python -m fleetvote_models.recipes $(ID)

bench-link: venv firmware-host  ## images/s one virtual board sustains through the Python client
	$(BIN)/python -m fleetvote.testbed.bench_link

ADAPTIVE_ARGS ?= --board-ms planned --replicas 1,2,3
bench-adaptive: venv firmware-host  ## modes all, early, cascade at saturation with 1-3 boards per member, and with one board slowed (ADAPTIVE_ARGS)
	$(BIN)/python -m fleetvote.testbed.bench_adaptive $(ADAPTIVE_ARGS)

bench-hotplug: venv firmware-host  ## /classify rps and latency at 1 and 16; unplug->offline, replug->ready times
	$(BIN)/python -m fleetvote.testbed.bench_hotplug

FUZZ_SECONDS ?= 600
fuzz-codec: venv  ## the firmware's frame decoder under libFuzzer (FUZZ_SECONDS=600)
	$(MAKE) -C firmware fuzz-codec FUZZ_SECONDS=$(FUZZ_SECONDS) PYTHON=$(abspath $(BIN)/python)

size-report: venv  ## flash and RAM of every (board, zoo model) STM32 image, beside the limits
	$(MAKE) -C firmware size-report PYTHON=$(abspath $(BIN)/python)

bench-firmware: venv  ## instructions per MAC of each member's firmware under QEMU, reference vs DSP
	$(MAKE) -C firmware bench-firmware PYTHON=$(abspath $(BIN)/python)

fresh-root:  ## make test 3 times from clean clones in a fresh Debian 12 root (root, debootstrap; ~30 min)
	tests/fresh-root.sh $(or $(ROOT_DIR),/var/tmp/fleetvote-fresh-root) $(or $(N),3)

qemu-startup: venv  ## each QEMU image kind started 10 times beside a CPU hog: failures, time to first answer
	$(BIN)/python -m fleetvote.testbed.bench_qemu --starts $(or $(N),10)

sim-qemu: venv  ## N emulated STM32F405 boards under QEMU, one member each (make sim-qemu N=2)
	$(BIN)/fleetvote sim --qemu $(or $(N),2)

clean:  ## remove the virtual environment and build outputs (not runs/)
	rm -rf $(VENV) build .pytest_cache

# ---- results: README's table from ensemble-eval, a bench of the virtual fleet, and the plan ------
RESULTS ?= runs/results
BENCH_COUNT ?= 256
.PHONY: results
results: venv firmware-host  ## regenerate README.md's results table (ensemble-eval with the cascade search and the gates, robustness, bench, plan, the Pareto plot; ~5 min, more for new models)
	@test -n "$$CIFAR10_PATH" || { echo "make results: set CIFAR10_PATH to cifar10-jpeg.tar.gz (figures are on that copy)"; exit 2; }
	@mkdir -p $(RESULTS)
	$(BIN)/fleetvote ensemble-eval --json $(RESULTS)/ensemble-eval.json --png $(RESULTS)/ensemble-eval.png \
	    --png-evaluations docs/evaluations.png --write-ensemble $(RESULTS)/ensemble-best.json --no-progress
	$(BIN)/fleetvote robustness --ensemble $(RESULTS)/ensemble-best.json --out $(RESULTS)/robustness.json --no-progress
	$(BIN)/fleetvote bench --serve-virtual --ensemble $(RESULTS)/ensemble-best.json --count $(BENCH_COUNT) \
	    --out $(RESULTS)/bench --no-progress
	$(BIN)/fleetvote plan --eval $(RESULTS)/ensemble-eval.json --bench $(RESULTS)/bench/bench.json \
	    --json $(RESULTS)/plan.json
	$(BIN)/fleetvote pareto --eval $(RESULTS)/ensemble-eval.json --plan $(RESULTS)/plan.json --png docs/pareto.png \
	    --json $(RESULTS)/pareto.json
	$(BIN)/fleetvote curves --png docs/curves.png --json $(RESULTS)/curves.json
	$(BIN)/fleetvote results --dir $(RESULTS) --readme README.md

# ---- reliability: chaos, load, API fuzzing (service/fleetvote/testbed/chaos.py, loadtest.py; tests/test_schemathesis.py)
CHAOS_ARGS ?= --boards 6 --victims 3 --requests 2000 --concurrency 8
LOAD_ARGS ?= --requests 10000 --concurrency 64
FUZZ_API_EXAMPLES ?= 1000
.PHONY: chaos load fuzz-api
chaos: venv firmware-host  ## faults at random into K of N virtual boards under load: answers, deadlines, recovery, leaks
	$(BIN)/python -m fleetvote.testbed.chaos $(CHAOS_ARGS)

load: venv firmware-host  ## 10,000 requests at concurrency 64 against fleetvote serve: throughput, p99, fallbacks, RSS
	$(BIN)/python -m fleetvote.testbed.loadtest $(LOAD_ARGS)

fuzz-api: venv firmware-host  ## the HTTP API against its OpenAPI schema under schemathesis (FUZZ_API_EXAMPLES per operation)
	FUZZ_API_EXAMPLES=$(FUZZ_API_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/test_schemathesis.py

# ---- the fleet at real-board speed (service/fleetvote/testbed/capacity.py): virtual boards padded to
# each member's planned latency on its catalogue board; runtime install only (no test extra)
CAPACITY_ARGS ?= --replicas 1,2,3 --duration 20
REALSPEED_ARGS ?= --replicas 1,2,3 --duration 20 --closed-count 128 --open-duration 30
.PHONY: bench-capacity bench-realspeed
bench-capacity: venv-run firmware-host  ## answered rate at saturation, 1-3 planned-speed boards per member, fallback off, vs the planner (~3 min)
	$(BIN)/python -m fleetvote.testbed.capacity $(CAPACITY_ARGS)

bench-realspeed: venv-run firmware-host  ## bench-capacity, then closed and open loop at planned speed into README.md's real-speed section (~8 min)
	$(BIN)/python -m fleetvote.testbed.capacity $(REALSPEED_ARGS) --realspeed --readme README.md

# ---- robustness: the best member, the fleet and the baseline on corrupted test images -------------
.PHONY: robustness
robustness: venv  ## accuracy on corrupted test images (CIFAR-10-C severity 3), best member vs fleet vs baseline (N=500 for a subset; ~15 min)
	@test -n "$$CIFAR10_PATH" || { echo "make robustness: set CIFAR10_PATH to cifar10-jpeg.tar.gz (figures are on that copy)"; exit 2; }
	@mkdir -p $(RESULTS)
	$(BIN)/fleetvote robustness --out $(RESULTS)/robustness.json $(if $(N),--limit $(N))

# ---- overload and hostile clients (service/fleetvote/testbed/overload.py, hostile.py; deploy/front/) --
OVERLOAD_ARGS ?=
HOSTILE_ARGS ?=
.PHONY: bench-overload bench-hostile
bench-overload: venv-run firmware-host  ## bursts of 64 and 256 (host speed) and open loop at 25-150 % of capacity (planned speed), each figure printed (~3 min)
	$(BIN)/python -m fleetvote.testbed.overload $(OVERLOAD_ARGS)

bench-hostile: venv-run firmware-host  ## 500 slow-header connections through the HAProxy front (deploy/front/haproxy.cfg): an ordinary client's p99 before and during, when each slow one was closed
	$(BIN)/python -m fleetvote.testbed.hostile $(HOSTILE_ARGS)

# ---- deployment, for real: Docker (Debian's docker.io) and HAProxy; root, minutes, not part of make test
.PHONY: test-containers test-balancer
# CONTAINERS_ARGS: e.g. --data-root DIR --base-root DIR (a daemon and a base of their own)
CONTAINERS_ARGS ?=
test-containers:  ## build the image and run the compose file's virtual profile (docker.io, docker-compose; root; run by .ci/run after make test)
	python3 tests/containers.py $(CONTAINERS_ARGS)

BALANCER_ARGS ?=
test-balancer: venv firmware-host  ## two instances behind HAProxy: load, SIGTERM and SIGKILL of one; failures, failover time
	$(BIN)/python -m fleetvote.testbed.balancer $(BALANCER_ARGS)
