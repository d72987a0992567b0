# The front door: `make run` starts the local stack, `make test` runs every test.
# Each target creates the virtualenv and installs what it needs on first use.

PYTHON ?= python3
#: `make run PORT=9000` serves the local stack elsewhere (the embedded AWS endpoint takes PORT + 1).
PORT   ?= 8080
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS_DIR := client/javascript

.PHONY: run test lint pytest js-build js-test mobile-test dashboard amplify bench clean

# The TypeScript client and the dashboard (client/javascript): npm ci on first use
# or when the lockfile changes, a rebuild when a source changes.
JS_INSTALLED := $(JS_DIR)/node_modules/.installed
JS_BUILT     := $(JS_DIR)/dashboard/dist/index.html
JS_SOURCES   := $(wildcard $(JS_DIR)/src/*.ts $(JS_DIR)/dashboard/src/* $(JS_DIR)/dashboard/src/views/*.ts $(JS_DIR)/scripts/*.mjs \
                  $(JS_DIR)/tsconfig*.json $(JS_DIR)/dashboard/tsconfig.json)

# pip's own output (and the build backends' warnings) goes to $(VENV)/install.log, shown
# only if the install fails, so the first `make run` ends with the stack's banner.
$(STAMP): pyproject.toml client/python/pyproject.toml constraints.txt
	@echo "==> installing the Python packages into $(VENV) (first run: about a minute; log: $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e client/python -e '.[dev]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@
	@echo "==> Python packages installed"

$(JS_INSTALLED): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@echo "==> installing the dashboard's npm packages (first run only)"
	@cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(JS_BUILT): $(JS_INSTALLED) $(JS_SOURCES)
	@echo "==> building the dashboard"
	@cd $(JS_DIR) && npm run --silent build

js-build: $(JS_BUILT)

# `make run` serves the dashboard when it can be built, and the API alone (with a warning) when not.
dashboard:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory js-build || \
		echo "warning: the dashboard build failed; cloud-ws local serves the API without it" >&2; \
	else \
		echo "warning: npm not found; cloud-ws local serves the API without the dashboard (install Node.js 20+ and npm)" >&2; \
	fi

run: $(STAMP) dashboard
	@$(BIN)/cloud-ws local --port $(PORT)

# The AppSync resolvers (pulumi_component/resolvers/*.js) are linted with AWS's APPSYNC_JS rules
# (@aws-appsync/eslint-plugin), from their own package; without npm they are not, with a warning.
APPSYNC_LINT_DIR       := tools/appsync-lint
APPSYNC_LINT_INSTALLED := $(APPSYNC_LINT_DIR)/node_modules/.installed

$(APPSYNC_LINT_INSTALLED): $(APPSYNC_LINT_DIR)/package.json $(APPSYNC_LINT_DIR)/package-lock.json
	@echo "==> installing the AppSync resolver linter (first run only)"
	@cd $(APPSYNC_LINT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict client/python/cloud_ws_client
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(APPSYNC_LINT_INSTALLED) && \
		$(APPSYNC_LINT_DIR)/node_modules/.bin/eslint -c $(APPSYNC_LINT_DIR)/eslint.config.mjs pulumi_component/resolvers; \
	else echo "warning: npm not found; the AppSync resolvers are not linted" >&2; fi

# The Amplify v6 test (tests/test_graphql/test_amplify.py) needs Amplify and ws, kept in
# their own package so the project's JavaScript package does not carry them.
AMPLIFY_DIR       := tests/test_graphql/amplify
AMPLIFY_INSTALLED := $(AMPLIFY_DIR)/node_modules/.installed

$(AMPLIFY_INSTALLED): $(AMPLIFY_DIR)/package.json $(AMPLIFY_DIR)/package-lock.json
	@echo "==> installing Amplify for the GraphQL client test (first run only)"
	@cd $(AMPLIFY_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

amplify:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(AMPLIFY_INSTALLED); \
	else echo "warning: npm not found; the Amplify test is skipped" >&2; fi

pytest: $(STAMP) amplify
	$(BIN)/coverage erase
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

js-test: $(STAMP) $(JS_BUILT)
	cd $(JS_DIR) && npm test

# The mobile example (examples/mobile): an Expo app on the TypeScript client's build output,
# tested with jest-expo and its web export in Chromium against a real local stack. Its own
# package (Expo, React Native, jest-expo), installed on first use like Amplify's.
MOBILE_DIR       := examples/mobile
MOBILE_INSTALLED := $(MOBILE_DIR)/node_modules/.installed

$(MOBILE_INSTALLED): $(MOBILE_DIR)/package.json $(MOBILE_DIR)/package-lock.json
	@echo "==> installing the mobile example's npm packages (first run only: about a minute)"
	@cd $(MOBILE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

mobile-test: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(JS_BUILT) $(MOBILE_INSTALLED) && \
		cd $(MOBILE_DIR) && EXPO_NO_TELEMETRY=1 npm test; \
	else echo "warning: npm not found; the mobile example's tests are skipped" >&2; fi

test: lint pytest js-test mobile-test

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
	rm -rf $(AMPLIFY_DIR)/node_modules $(JS_DIR)/node_modules $(JS_DIR)/dist $(JS_DIR)/build $(JS_DIR)/dashboard/dist
	rm -rf $(MOBILE_DIR)/node_modules $(MOBILE_DIR)/build $(MOBILE_DIR)/artifacts $(MOBILE_DIR)/.expo
	rm -rf $(APPSYNC_LINT_DIR)/node_modules
