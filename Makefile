# The quick start: `make run` (everything, on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench lint venv fixtures demo-models clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	touch $@

run: venv
	$(PY) -m audioseal_site.quickstart

test: venv
	$(PY) -m pytest

bench: venv
	$(PY) -m bench.run

lint: venv
	$(VENV)/bin/ruff check .

# Regenerate the committed test audio (needs espeak-ng) and the demo models (see their cards).
fixtures: venv
	$(PY) scripts/make_fixtures.py

demo-models: venv
	$(PY) scripts/build_demo_emotion_model.py
	# the command media_ops/demo_models/audioseal/card.json records (about 55 min on one CPU thread)
	$(PY) scripts/train_demo_watermark.py --steps 5326 --seed 1234 --threads 1 --eval-every 500 --ship-early \
	  --recipe '{"lr_max": 1e-3, "lr_min": 1e-4, "warmup": 30, "msg_weight_max": 20.0, "msg_ramp_steps": 1, "msg_init_scale": 0.25, "augs": "product", "partial_prob": 0.2, "frame_msg_weight": 0.0, "snr_final_db": 22.0, "carrier_floor": 0.25, "carrier_decorrelation": 100.0, "arch": {"dimension": 128}, "snr_loud_db": 10.0, "loud_until": 0.25, "ramp_until": 0.6, "aug_from": 800}'

clean:
	rm -rf var
