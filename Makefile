# The quick start: `make run` (everything, on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench bench-robustness soak lint lint-imports venv fixtures demo-models clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	# The SDK and `studio` CLI (sdk/; its tests are in the suite): editable, built with the setuptools just
	# installed (no download). Not in requirements.txt: the server images install that file alone.
	$(PY) -m pip install -q --no-build-isolation -e ./sdk
	touch $@

run: venv
	$(PY) -m audioseal_site.quickstart

test: venv lint-imports
	$(PY) -m pytest

# The layering contracts (pyproject.toml [tool.importlinter]): the apps depend one way, no import circles.
lint-imports: venv
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) -m bench.run

# The attack battery (media_ops/watermark/attacks.py) on held-out speech and synthetic music: the shipped
# watermark (the product's detect path, alignment search on) beside Resemble's pretrained PerTh, one table.
# PerTh is fetched from PyPI into var/perth on first use; held-out espeak clips need espeak-ng.
bench-robustness: venv
	$(PY) -m bench.robustness

# Thousands of mixed jobs against the quick start while workers are killed, Redis flushed and PostgreSQL
# restarted at random; prints the invariants (every job final, books balanced, nothing billed twice, no orphan).
soak: venv
	$(PY) -m bench.soak

lint: venv lint-imports
	$(VENV)/bin/ruff check .

# Regenerate the committed test audio (needs espeak-ng) and the demo models (see their cards).
fixtures: venv
	$(PY) scripts/make_fixtures.py

demo-models: venv
	$(PY) scripts/build_demo_emotion_model.py
	# stage 1 (v2): the script's default recipe (about 55 min on one thread)
	$(PY) scripts/train_demo_watermark.py --steps 5326 --seed 1234 --threads 1 --eval-every 500 --ship-early
	# stage 2 (v3b, shipped): the attack battery's edits, fine-tuned from stage 1 (about 40 min on one thread);
	# card.json records this run
	$(PY) scripts/train_demo_watermark.py --steps 2400 --seed 1234 --threads 1 --eval-every 400 \
		--init media_ops/demo_models/audioseal --recipe "$$(cat scripts/recipes/demo_watermark_v3b.json)"

clean:
	rm -rf var
