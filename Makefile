# vtd-bridge — build, test and install.
#
# Every target installs what it needs itself (you are expected to be root on
# a fresh Debian machine with the Swift toolchain; apt-get works).

SHELL        := /bin/bash
SWIFT        ?= swift
CONFIG       ?= debug
PREFIX       ?= /usr/local
DESTDIR      ?=
SWIFT_FLAGS  ?=
BUILD_DIR    := .build

.PHONY: all build release test unit-test deps clean help

all: build

help:
	@echo "make build      debug build of every target"
	@echo "make release    optimized build (static Swift stdlib)"
	@echo "make test       install what is missing, run every test, print 'N passed, N failed'"
	@echo "make clean      remove build output"

# <linux/vfio.h> comes from linux-libc-dev, pulled in by libc6-dev.
deps:
	@if [ ! -f /usr/include/linux/vfio.h ]; then \
	  echo "installing libc6-dev for <linux/vfio.h>"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev linux-libc-dev; \
	fi

build: deps
	$(SWIFT) build $(SWIFT_FLAGS)

release: deps
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_FLAGS)

# Unit and process-level tests on this host. XCTest only: the closing line
# must count the tests that really ran.
unit-test: deps
	@set -o pipefail; mkdir -p $(BUILD_DIR); \
	$(SWIFT) test --disable-swift-testing $(SWIFT_FLAGS) 2>&1 | tee $(BUILD_DIR)/unit-test.log; \
	status=$$?; \
	scripts/test-summary $(BUILD_DIR)/unit-test.log unit > $(BUILD_DIR)/unit-test.summary || status=1; \
	cat $(BUILD_DIR)/unit-test.summary; exit $$status

test: unit-test
	@scripts/test-summary --total $(BUILD_DIR)/unit-test.summary

clean:
	rm -rf $(BUILD_DIR)
