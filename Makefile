# Two commands on a fresh machine with python3 and make:  `make run`  and  `make test`.
# Each creates .venv when missing, installs the pinned stack, fusionlib (editable) and the
# "fusionlib" Jupyter kernel, then does its job.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch is pinned here; for a CUDA build use e.g.
#   make run TORCH="torch==2.13.0" PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128 --extra-index-url https://pypi.org/simple"
TORCH   ?= torch==2.13.0
PIP_ARGS ?=
PROFILE ?=
STAMP   := $(VENV)/.fusionlib-installed
INSTALL_LOG := $(VENV)/install.log

.PHONY: setup run weights test unit nbtest release-test nbval-update lab labs site browser clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-site.txt pyproject.toml
	@test -x $(BIN)/python || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing $(TORCH) and the pinned stack (requirements.txt); log: $(INSTALL_LOG)"
	@{ $(BIN)/python -m pip install --disable-pip-version-check $(PIP_ARGS) "$(TORCH)" -r requirements.txt -r requirements-site.txt \
	  && $(BIN)/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  && $(BIN)/python -m ipykernel install --sys-prefix --name fusionlib --display-name "Python (fusionlib)"; \
	} > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo ">> install failed: the full log is above and in $(INSTALL_LOG)"; exit 1; }
	@echo ">> installed: $$($(BIN)/python -c 'import torch, fusionlib; print("torch", torch.__version__, "and fusionlib", fusionlib.__version__)')"
	@touch $@

## make run [PROFILE=smoke|lab|paper]: execute every notebook into runs/<notebook>/
run: setup
	$(BIN)/python -m fusionlib.runner notebooks --out runs $(if $(PROFILE),--profile $(PROFILE),) $(RUN_ARGS)

## make weights [WEIGHTS="siba rpfnet"]: retrain the shipped networks with their notebooks' training functions
## (runs/weights/<method>/, resumable), measure them and write weights/<method>.pt + weights/MANIFEST.json
WEIGHTS ?=
weights: setup
	$(BIN)/python -m fusionlib.weights train $(WEIGHTS)

## make browser: Debian's Chromium for the rendered-site test (tests/test_site.py), when missing
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { echo ">> installing chromium (apt) for the browser test of the rendered site"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

## make test: unit tests and doctests + one papermill smoke execution of every notebook (two at a time),
## the nbval check of its marked cells on that run, and the site in Chromium
PYTEST  := $(BIN)/python -m pytest
test: setup browser
	$(PYTEST) tests fusionlib --doctest-modules -m "not slow and not gpu and not release"

unit: setup
	$(PYTEST) tests fusionlib --doctest-modules -m "not slow and not gpu and not notebooks and not release"

nbtest: setup browser
	$(PYTEST) tests -m "notebooks and not release"

## make release-test: what make test proves more cheaply, by execution (the solution-filled student
## notebooks at smoke), and the full-size checks (slow); before a release, or after changing fusionlib.labs
release-test: setup
	$(PYTEST) tests -m "(release or slow) and not gpu"

## make nbval-update [NB=03]: store the outputs of the cells marked # NBVAL_CHECK_OUTPUT (runs each
## notebook at smoke up to its last marked cell); after an intended change of what such a cell prints
nbval-update: setup
	$(BIN)/python -m fusionlib.nbval_check update $(if $(NB),--only $(NB),)

## make lab: open the notebooks in JupyterLab with the fusionlib kernel
lab: setup
	$(BIN)/jupyter lab notebooks

## make labs: student versions of the paper notebooks into labs/ (exercises stubbed, checks kept)
labs: setup
	$(BIN)/python -m fusionlib.labs notebooks --out labs

## make site: static offline HTML of the notebooks executed by `make run` -> site/index.html
site: setup
	$(BIN)/python -m fusionlib.site --runs runs --out site

clean:
	rm -rf runs labs site .pytest_cache
