# Two commands on a fresh machine (each sets up what it needs first):
#   make demo   runs the main job: real ComfyUI, headless, runs the shipped workflow on the embedded assets
#   make test   runs the whole test suite (unit, real ComfyUI server, real browser)
PY := .venv/bin/python

.PHONY: setup browser demo test test-unit clean

setup:
	@bash scripts/setup.sh

browser:
	@bash scripts/setup_browser.sh

demo: setup
	@$(PY) scripts/demo.py

test: setup browser
	@$(PY) -m pytest -ra -p no:cacheprovider tests

test-unit: setup
	@$(PY) -m pytest -ra -p no:cacheprovider tests/unit

clean:
	rm -rf .venv .comfyui output test-artifacts
