# gateway-stats — every target installs what it needs into .venv by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint proto bench bench-profile bench-transports fuzz soak clean litellm-parity

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Envoy + gateway-stats + a mock LLM, real traffic, then the ai_log lines and metrics.
demo: $(STAMP)
	$(BIN)/gateway-stats demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gateway_stats tests
	$(BIN)/mypy

# What gateway-stats costs the traffic, beside plain Envoy and a naive no-op processor, same run
# (about 10 min; BENCH_QUICK=1 for a 1-2 min smoke run). Tables go to docs/benchmarks.md.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing wrk (Debian package)"; \
		DEBIAN_FRONTEND=noninteractive apt-get -y -qq install wrk >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get -y -qq install wrk >/dev/null 2>&1; } || \
		echo "bench: wrk unavailable; JSON loads fall back to the Python client (it saturates sooner)"; }
	BENCH_COMMAND="make bench" $(BIN)/python -m gateway_stats.bench --write-doc docs/benchmarks.md

# Where the sidecar's time goes under the JSON and SSE loads (py-spy); summary into docs/benchmarks.md.
bench-profile: $(STAMP)
	$(BIN)/pip install --quiet -e '.[profile]'
	BENCH_COMMAND="make bench-profile" $(BIN)/python -m gateway_stats.bench --profile --write-doc docs/benchmarks.md

# The long fuzz run (docs/reliability.md): the hypothesis targets with FUZZ_SCALE x their CI budget and
# fresh random seeds, then each atheris (coverage-guided) target for FUZZ_SECONDS (default 120 s each;
# about 15 min in all). Corpora are kept in .fuzz/corpus/<target>, crashing inputs land in .fuzz/crashes/.
FUZZ_SECONDS ?= 120
FUZZ_SCALE ?= 20
FUZZ_TARGETS ?= observer sse gjson config decoders
fuzz: $(STAMP)
	$(BIN)/pip install --quiet -e '.[fuzz]'
	FUZZ_SCALE=$(FUZZ_SCALE) FUZZ_RANDOM=1 $(BIN)/pytest -q -p no:cacheprovider tests/fuzz
	@mkdir -p .fuzz/crashes
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/corpus/$$t; [ $$t != config ] || cp config/*.yaml .fuzz/corpus/config/; echo "fuzz: atheris $$t for $(FUZZ_SECONDS) s"; \
		$(BIN)/python tests/fuzz/atheris_harness.py $$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
			-artifact_prefix=.fuzz/crashes/$$t- .fuzz/corpus/$$t > .fuzz/$$t.log 2>&1 \
			|| { grep -v '^INFO: Instrumenting' .fuzz/$$t.log | tail -40; exit 1; }; \
		grep -E '^#[0-9]+.*(DONE|pulse)|^Done' .fuzz/$$t.log | tail -2; \
	done

# Steady mixed load (JSON, SSE, errors, aborts) through Envoy for SOAK_MINUTES (30 documented), sampling
# the sidecar once a second; soak/samples.csv, soak/soak.png, soak/verdict.md (docs/reliability.md).
SOAK_MINUTES ?= 30
SOAK_RATE ?= 100
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/pip install --quiet -e '.[soak]'
	$(BIN)/python -m gateway_stats.bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) --out soak $(SOAK_ARGS)

# The gRPC transports side by side (grpc.aio with and without uvloop, grpcio's threaded server; TCP and a
# Unix socket), for the no-op and for gateway-stats; table into docs/benchmarks.md.
bench-transports: $(STAMP)
	BENCH_COMMAND="make bench-transports" $(BIN)/python -m gateway_stats.bench --transports --write-doc docs/benchmarks.md

# Regenerate the minimal ext_proc stubs from proto/ (committed, so users never need protoc).
proto: $(STAMP)
	rm -rf gateway_stats/_proto && mkdir -p gateway_stats/_proto
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=gateway_stats/_proto --grpc_python_out=gateway_stats/_proto \
		$$(cd proto && find . -name '*.proto' | sed 's|^\./||')
	find gateway_stats/_proto -type d -exec touch {}/__init__.py \;
	find gateway_stats/_proto -name '*.py' -exec sed -i -E 's/^from envoy\./from gateway_stats._proto.envoy./' {} \;

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .fuzz

# Re-derive the LiteLLM parity figures with LiteLLM itself (big; not a dependency): the committed
# figures must not change, and LiteLLM's own bundled price map (thousands of entries) must load.
LITELLM_VENV ?= .venv-litellm
litellm-parity: $(STAMP)
	test -x $(LITELLM_VENV)/bin/python || { $(PYTHON) -m venv $(LITELLM_VENV) && \
		$(LITELLM_VENV)/bin/pip install --quiet litellm==1.110.2; }
	LITELLM_LOCAL_MODEL_COST_MAP=True $(LITELLM_VENV)/bin/python tests/pricing/data/litellm_reference.py
	git diff --exit-code tests/pricing/data/litellm_reference.json
	map=$$(LITELLM_LOCAL_MODEL_COST_MAP=True $(LITELLM_VENV)/bin/python -c \
		'import litellm, os; print(os.path.dirname(litellm.__file__))')/model_prices_and_context_window_backup.json; \
	printf 'gateway_stats: {pricing: {files: ["%s"]}}\n' "$$map" > $(VENV)/litellm-map.yaml && \
	$(BIN)/gateway-stats check-config $(VENV)/litellm-map.yaml
