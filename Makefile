# boma — thin front door. Logic lives in the playbooks, roles and the Rust harness (xtask):
# these targets only delegate. The Rust side adds test, lint, test-integration and
# test-integration-clean.

VENV       ?= .venv
PYTHON     ?= python3
ANSIBLE_BIN = $(VENV)/bin
INVENTORY  ?= inventories/production/
# Playbooks syntax-checked by lint-ansible.
PLAYBOOKS  := $(wildcard playbooks/*.yml) tests/integration/verify.yml

.PHONY: venv lint-ansible test-templates

# The stamp records which requirements.txt the venv was built from, so an edit re-installs.
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

## venv: create .venv with the pinned Ansible, ansible-lint and yamllint
venv: $(VENV)/.stamp

## lint-ansible: yamllint, ansible-lint (production profile) and a syntax check of each playbook
lint-ansible: venv
	$(ANSIBLE_BIN)/yamllint --strict .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-lint
	@set -e; for p in $(PLAYBOOKS); do \
		echo "+ ansible-playbook --syntax-check -i $(INVENTORY) $$p"; \
		$(ANSIBLE_BIN)/ansible-playbook --syntax-check -i $(INVENTORY) $$p; \
	done

## test-templates: render the real Caddyfile template per cert tier and diff it with the reviewed files
test-templates: venv
	$(ANSIBLE_BIN)/ansible-playbook -i tests/caddyfile/inventory.yml tests/caddyfile/render.yml
