# Entry points.  `make demo` and `make test` do all set-up themselves:
# system packages (scripts/setup-system.sh), a virtualenv in .venv, and an
# editable install of s3dlio (which builds the C core through build.py).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
STAMP := $(VENV)/.s3dlio-installed

.PHONY: all setup demo test test-c test-c-asan test-py bench bench-s3 bench-s3-calls bench-cloud bench-writers bench-checkpoint bench-dataloader clean

all: setup

$(PY):
	bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall when the package definition or native sources change.
$(STAMP): $(PY) pyproject.toml setup.py build.py scripts/setup-node-tools.sh $(shell find native s3dlio -name '*.[ch]' 2>/dev/null)
	bash scripts/setup-system.sh
	bash scripts/setup-node-tools.sh
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) bench/demo.py

test: setup test-c test-c-asan test-py

test-c:
	cmake -S native -B build/ctest -DCMAKE_BUILD_TYPE=Debug -DS3DL_BUILD_TESTS=ON > /dev/null
	cmake --build build/ctest -j $(JOBS)
	ctest --test-dir build/ctest --output-on-failure

test-c-asan:
	cmake -S native -B build/ctest-asan -DCMAKE_BUILD_TYPE=Debug -DS3DL_BUILD_TESTS=ON -DS3DL_SANITIZE=ON > /dev/null
	cmake --build build/ctest-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build/ctest-asan --output-on-failure

test-py: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py

# S3 against its peers on a loopback nginx (installs the peers in their own venvs).
bench-s3: setup
	$(PY) bench/s3.py

# import cost, single get() loops and first-call get_many, in fresh processes.
bench-s3-calls: setup
	$(PY) bench/s3_calls.py

# gs:// and az:// against the official SDKs on loopback fake-gcs-server and Azurite.
bench-cloud: setup
	$(PY) bench/cloud.py

# The streaming writers against boto3 (loopback moto), dd and zstandard.
bench-writers: setup
	$(PY) bench/writers.py

# Checkpoints: save_checkpoint/load_checkpoint and DCP storage against torch.save/torch.load
# and DCP's own, on the local disk and a loopback moto.
bench-checkpoint: setup
	$(PY) bench/checkpoint.py

# The PyTorch datasets in a DataLoader against the Rust s3dlio's, boto3 and s3torchconnector.
bench-dataloader: setup
	$(PY) bench/dataloader.py

clean:
	rm -rf build $(VENV) s3dlio/*.so s3dlio/*.so.* s3dlio/_s3dl_cffi.c
