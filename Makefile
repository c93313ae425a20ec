# One entry point for people and CI.
#   make demo   - bring up the local lab and run the monitor against it
#   make test   - bring up the local lab and run the whole test suite
# Every target installs what it needs and is safe to run again.

# The Python versions setup.cfg declares (its classifiers), lowest first.
PYTHONS := $(shell sed -n 's/^ *Programming Language :: Python :: \(3\.[0-9]*\)$$/\1/p' setup.cfg | sort -t. -k2 -n)
LOWEST_PYTHON := $(firstword $(PYTHONS))
HIGHEST_PYTHON := $(lastword $(PYTHONS))
# An interpreter of version $(1): pyenv's, else python3.N on PATH.
PYENV_ROOT ?= $(HOME)/.pyenv
python_of = $(firstword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python) $(shell command -v python$(1)))

# The main virtualenv is of the lowest declared version: the unit and
# integration tests run there, so what is declared is what is tested.
PYTHON ?= $(call python_of,$(LOWEST_PYTHON))
VENV   ?= .venv
LAB_CACHE ?= /var/cache/guest-health-monitor-lab
export LAB_CACHE

VENV_STAMP = $(VENV)/.installed

.PHONY: help venv venv-highest venvs pythons host lab guest-image masakari masakari-monitors unit unit-matrix unit-webhook unit-rest integration integration-parts test demo demo-standalone bench bench-scale docs genconfig lint clean

help:
	@echo "make demo   - lab + monitor demo (crashes a guest, prints the notification)"
	@echo "make demo-standalone - the same without Masakari: evidence, reset, signed webhook"
	@echo "make test   - lab + the whole test suite (unit and integration)"
	@echo "make unit   - unit tests only (no lab needed)"
	@echo "make pythons - the daemon's start-up test on every declared Python"
	@echo "make bench  - lab benchmarks, ours and masakari-monitors at 10/2/3 and 2/1/3"
	@echo "make bench-scale - scale benchmark on a simulated libvirt (no lab needed)"
	@echo "make docs   - the user guide (docs/) into build/docs/html"

# Debian packages, users, directories, virtlogd + libvirtd.
host:
	bash lab/host-setup.sh

$(VENV_STAMP): requirements.txt test-requirements.txt setup.cfg
	@[ -n "$(PYTHON)" ] || { echo "Python $(LOWEST_PYTHON), the lowest" \
		"setup.cfg declares, is not installed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt -r test-requirements.txt
	$(VENV)/bin/pip install -q -e .
	touch $@

venv: $(VENV_STAMP)

# A virtualenv per other declared version, .venv-py3N, for the test that
# starts the daemon's console script on each declared version
# (tests/unit/cmd/test_daemon_pythons.py); only the main one has the test
# tools. Each one costs 35 s to build with pip's cache, 80 s without
# (libvirt-python compiles), so `make test` builds only the highest
# declared version's: with the main one (the lowest) it brackets the
# range, where the standard library and the dependencies' releases
# differ most; the versions between rarely break what both ends accept.
# `make pythons` builds them all and runs that test on each, on demand
# (before a release, or when a dependency floor moves). In CI the test
# fails when a declared version has no interpreter, or the lowest or the
# highest no virtualenv; elsewhere it skips, saying why.
venv_of = .venv-py$(subst .,,$(1))
version_of_stem = $(shell echo $(1) | sed 's/^3/3./')

.venv-py%/.installed: requirements.txt setup.cfg
	@py='$(call python_of,$(call version_of_stem,$*))'; \
	[ -n "$$py" ] || { echo "Python $(call version_of_stem,$*) is" \
		"declared in setup.cfg but not installed"; exit 1; }; \
	set -x; "$$py" -m venv .venv-py$* && \
	.venv-py$*/bin/pip install -q --upgrade pip && \
	.venv-py$*/bin/pip install -q -r requirements.txt && \
	.venv-py$*/bin/pip install -q -e .
	touch $@

venv-highest: $(if $(filter-out $(LOWEST_PYTHON),$(HIGHEST_PYTHON)),$(call venv_of,$(HIGHEST_PYTHON))/.installed)

venvs: $(foreach v,$(filter-out $(LOWEST_PYTHON),$(PYTHONS)),$(call venv_of,$(v))/.installed)

pythons: venv venvs
	$(VENV)/bin/pytest -q tests/unit/cmd/test_daemon_pythons.py

guest-image: host
	bash lab/build-guest.sh

masakari: host
	bash lab/masakari-setup.sh

# masakari-monitors 22.0.0 in its own virtualenv: the benchmarks' peer, and
# the masakari-instancemonitor the coexistence tests run beside the monitor.
masakari-monitors: host
	bash bench/peer/setup.sh

lab: host guest-image masakari masakari-monitors venv

# The configuration matrix and the webhook tests run in pytest processes
# of their own: in one process with the many tests that load eventlet's
# green modules, a test HTTP server on a native thread has been seen to
# hang (eventlet's green copies of the standard library's server modules).
# The three unit processes run at once (-j3), each one's output printed
# whole when it ends (--output-sync); make fails when any of them fails.
# Most unit time is spent waiting on subprocesses and sockets, so the
# third process also spreads its tests over UNIT_WORKERS pytest-xdist
# workers (0: in the process itself), which take tests from each other
# once their own are done (worksteal): the slow command-line tests bunch
# in a few files.
#
# The integration tests share one libvirtd. Most of their time is spent
# waiting on guests (about a third of two cores is busy), so they run in
# LAB_WORKERS processes, each test file whole in one of them (its module's
# guests and servers are shared by its tests); every process's daemons
# watch only that process's guests (lab/daemon.py). Tests that stop
# libvirtd itself (marked whole_host) run afterwards, alone.
MATRIX = tests/unit/conf/test_config_matrix.py
WEBHOOK = tests/unit/notify/test_webhook.py
UNIT_WORKERS ?= 4
LAB_WORKERS ?= 3
LAB_PARALLEL = -n $(LAB_WORKERS) --dist loadfile -m 'not whole_host'
UNIT_PARTS = unit-matrix unit-webhook unit-rest

unit: venv venv-highest
	$(MAKE) --no-print-directory -j3 --output-sync=target $(UNIT_PARTS)

unit-matrix:
	$(VENV)/bin/pytest -q $(MATRIX)

unit-webhook:
	$(VENV)/bin/pytest -q $(WEBHOOK)

unit-rest:
	$(VENV)/bin/pytest -q -n $(UNIT_WORKERS) --dist worksteal tests/unit \
		--ignore=$(MATRIX) --ignore=$(WEBHOOK)

integration: lab
	$(MAKE) --no-print-directory integration-parts

# The slowest integration tests are listed at the end of the parallel
# part, so the suite's time budget is watched where it is spent. The
# whole_host part runs even when the parallel part failed, so one run
# shows every failure; make fails when either did.
integration-parts:
	$(VENV)/bin/pytest -q --durations=15 $(LAB_PARALLEL) tests/integration; \
	parallel=$$?; \
	$(VENV)/bin/pytest -q -m whole_host tests/integration; \
	alone=$$?; \
	[ $$parallel -eq 0 ] && [ $$alone -eq 0 ]

test: lab
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration-parts

demo: lab
	$(VENV)/bin/python -m lab.demo

# A plain libvirt host: no Masakari, the monitor resets the guest itself
# and reports to a local webhook receiver that prints what it got.
demo-standalone: host guest-image venv
	$(VENV)/bin/python -m lab.demo_standalone

# Ours and the peer (bench/peer/setup.sh, run by run_all) in turn on the
# lab, at Masakari's defaults and at 2/1/3; hold /tmp/ghm-lab.lock.
bench: lab
	$(VENV)/bin/python -m bench.run_all

# The daemon and the peer on a simulated libvirt binding: no libvirtd, no
# guests, no lock. A peer that cannot be installed is left out. libvirtd
# and the daemon set up for 5,000 guests (README.md, "Large hosts").
bench-scale: venv
	-bash bench/peer/setup.sh
	$(VENV)/bin/python -m bench.scale --max-client-requests 50 \
		--max-workers 70 --max-concurrent-pings 50 --crashes 7
	# 5,000 guests for 1,000 rounds, failing and recovering; pings of
	# 5-10 ms and a 2 s interval so that it ends in about 40 minutes.
	$(VENV)/bin/python -m bench.soak --size 5000 --rounds 1000 \
		--interval 2 --ping-ms 5-10 --churn 20

# The user guide, warnings as errors, into build/docs/html.
docs: venv
	$(VENV)/bin/sphinx-build -q -W --keep-going -b html docs build/docs/html

genconfig: venv
	$(VENV)/bin/oslo-config-generator --config-file etc/oslo-config-generator.conf

lint: venv
	$(VENV)/bin/ruff check monitor tests lab bench

clean:
	rm -rf $(VENV) .venv-py* .pytest_cache
