# boma — thin front door. Logic lives in the playbooks, roles and the Rust harness (xtask):
# these targets only delegate. The Rust side adds test, lint, doctor, test-integration and
# test-integration-clean.

VENV       ?= .venv
PYTHON     ?= python3
ANSIBLE_BIN = $(VENV)/bin
# Raw-QEMU boots and harness `up`s the VM suite's baseline times (the median is reported).
BASELINE_RUNS ?= 3
# The VM suite's scenarios (`all`: every QEMU scenario, the catalogue's CI set among them).
VM_SCENARIOS ?= all

.PHONY: venv test-templates

# The stamp records which requirements.txt the venv was built from, so an edit re-installs.
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

## venv: create .venv with the pinned Ansible, ansible-lint and yamllint
venv: $(VENV)/.stamp

## test-templates: render the real Caddyfile template per cert tier and diff it with the reviewed files
test-templates: venv
	$(ANSIBLE_BIN)/ansible-playbook -i tests/caddyfile/inventory.yml tests/caddyfile/render.yml

# --- The Rust harness (xtask) -------------------------------------------------------------

# Where cargo puts binaries (honours CARGO_TARGET_DIR).
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: bench test test-vm test-catalogue test-integration test-integration-clean lint check-tags doctor

## test: the fast tests: cargo test (no root, no VM) and the Caddyfile tier renders
test: venv
	cargo test --workspace
	$(MAKE) test-templates

## test-vm: the VM suite (root, real guests under TCG, many minutes): baseline, lifecycle, askari,
## red, ubongo, the failure catalogue's CI set, safety, faults (VM_SCENARIOS=<names> runs others,
## e.g. catalogue for the whole catalogue; TIMINGS=<file> keeps the timings as JSON)
test-vm: venv
	cargo build --workspace --bins
	$(TARGET_DIR)/debug/vm-suite --xtask $(TARGET_DIR)/debug/xtask --baseline-runs $(BASELINE_RUNS) $(if $(TIMINGS),--timings $(TIMINGS)) $(VM_SUITE_ARGS) $(VM_SCENARIOS)

## test-catalogue: the failure catalogue's profiles CI leaves out (the GREEN twins, modes 5 and 6);
## CATALOGUE_SET=all runs every mode, RED and GREEN (root, real guests, ~1 h under TCG)
CATALOGUE_SET ?= rest
test-catalogue: venv
	cargo build --workspace --bins
	$(TARGET_DIR)/debug/vm-suite --xtask $(TARGET_DIR)/debug/xtask $(if $(TIMINGS),--timings $(TIMINGS)) --catalogue-set $(CATALOGUE_SET) catalogue

## bench: the figures (root, real guests, hours under TCG): layers, per-task measures, -j 2, reboots;
## BENCH_RUNS runs of each variant (medians), written to target/bench.json. Not part of CI.
## BENCH_GROUPS=<a,b> runs some of layers, reboot, per-task, parallel.
BENCH_RUNS ?= 3
bench: venv
	cargo build --workspace --bins
	$(TARGET_DIR)/debug/vm-suite --xtask $(TARGET_DIR)/debug/xtask --baseline-runs $(BENCH_RUNS) $(if $(BENCH_GROUPS),--bench-groups $(BENCH_GROUPS)) bench

## test-integration: install the VM substrate when something is missing (the integration_test
## role, once), then the whole cycle for HOST (CERTS=internal|le-staging|le-prod-wildcard,
## KEEP=1, JUNIT=<file>, REPORT=<file>)
test-integration: venv
ifndef HOST
	$(error HOST is required: make test-integration HOST=<name> [CERTS=internal|le-staging|le-prod-wildcard] [KEEP=1] [JUNIT=<file>] [REPORT=<file>])
endif
	cargo xtask substrate
	cargo xtask it $(HOST) $(if $(CERTS),--certs $(CERTS)) $(if $(KEEP),--keep) $(if $(JUNIT),--junit $(JUNIT)) $(if $(REPORT),--report $(REPORT))

## doctor: can this machine run the cycle? every tool, KVM, memory, disk, libvirt, image cache, venv (installs nothing)
doctor:
	cargo xtask doctor

## test-integration-clean: remove every test VM and run file (also after a crash)
test-integration-clean:
	cargo xtask prune

## lint: check-tags, cargo fmt --check, clippy -D warnings, cargo test with no orphaned or pending
## insta snapshot (cargo insta test --check --unreferenced=reject, without cargo-insta), yamllint,
## ansible-lint, the syntax check of every playbook a profile applies or verifies with (all inside
## `cargo xtask lint`)
lint: venv
	cargo xtask lint

## check-tags: every Ansible tag is a role name or listed in tests/tags.yml
check-tags:
	cargo xtask check-tags
