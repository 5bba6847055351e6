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

.PHONY: all build release test unit-test protocol-test deps clean help

all: build

help:
	@echo "make demo       boot the test VM and show the daemon bridging a simulated guest's DMA to real edu devices"
	@echo "make demo-qemu  boot the test VM and show an unmodified QEMU 11.1 using the real edu through the daemon (vfio-user)"
	@echo "make demo-l2    the whole stack: an L2 Linux's own intel-iommu driver maps edu DMA buffers through QEMU 11.1 and the daemon (4-7 min)"
	@echo "make test       unit, protocol, real-device (VM) and install tests and 60 s of each fuzzer; ends with 'N passed, N failed'"
	@echo "make build      debug build of every target; fails on any warning (so do release and unit-test)"
	@echo "make release    optimized build (static Swift stdlib)"
	@echo "make install    stripped binaries, man pages, completions, systemd unit, example config, docs (PREFIX, DESTDIR; WITH_SIM=1 adds vtdbridge-sim)"
	@echo "make uninstall  removes what make install wrote; keeps /etc/vtd-bridge/*.json and /var/lib/vtd-bridge"
	@echo "make install-test  install and uninstall into scratch roots, checked (part of make test)"
	@echo "make vm-run CMD=script.sh   run a script in the test VM (VM_QEMU=1: with QEMU 11.1 inside; VM_SYSTEMD=1: under systemd)"
	@echo "make qemu-deps  cache QEMU 11.1 (vfio-user, qtest) for the test VM in \$$VTD_CACHE (/var/cache/vtd-bridge)"
	@echo "make vm-qemu-smoke  boot the test VM with QEMU 11.1 inside and check it runs (qtest)"
	@echo "make vm-systemd-test  boot Debian's systemd in the test VM and run vtdbridged@vm0 as installed (part of make test)"
	@echo "make vm-systemd-deps  cache the systemd profile's bookworm root in \$$VTD_CACHE (/var/cache/vtd-bridge)"
	@echo "make bench      benchmarks (host and VM); writes docs/BENCHMARKS.md"
	@echo "make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each; make fuzz-regress replays the corpus"
	@echo "make check      unit tests under AddressSanitizer and ThreadSanitizer (.build-asan, .build-tsan); not in make test"
	@echo "make clean      remove build output"

# <linux/vfio.h> comes from linux-libc-dev, pulled in by libc6-dev.
deps:
	@if [ ! -f /usr/include/linux/vfio.h ]; then \
	  echo "installing libc6-dev for <linux/vfio.h>"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev linux-libc-dev; \
	fi

# The commit every --version names (Sources/CBuildInfo). The header is
# rewritten only when the commit changes, so an unchanged tree rebuilds
# nothing; build_info.c is touched then, because a header the compiler did
# not see last time (it is optional: __has_include) is in no dependency file.
BUILD_COMMIT_HEADER := Sources/CBuildInfo/vtd_build_commit.h

.PHONY: build-commit
build-commit:
	@commit=$$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown); \
	line="#define VTD_BUILD_COMMIT \"$$commit\""; \
	if [ "$$(cat $(BUILD_COMMIT_HEADER) 2>/dev/null)" != "$$line" ]; then \
	  echo "$$line" > $(BUILD_COMMIT_HEADER); touch Sources/CBuildInfo/build_info.c; \
	fi

# No build may print a warning. Compiler warnings are errors already
# (Package.swift); scripts/no-warnings fails on the linker's and SwiftPM's.
build: deps build-commit
	@set -o pipefail; $(SWIFT) build $(SWIFT_FLAGS) 2>&1 | scripts/no-warnings

release: deps build-commit
	@set -o pipefail; $(SWIFT) build -c release --static-swift-stdlib $(SWIFT_FLAGS) 2>&1 | scripts/no-warnings

# Unit and process-level tests on this host. XCTest only: the closing line
# must count the tests that really ran.
unit-test: deps build-commit
	@set -o pipefail; mkdir -p $(BUILD_DIR); \
	$(SWIFT) test --disable-swift-testing $(SWIFT_FLAGS) 2>&1 | tee $(BUILD_DIR)/unit-test.log; \
	status=$$?; \
	scripts/no-warnings $(BUILD_DIR)/unit-test.log || status=1; \
	scripts/test-summary $(BUILD_DIR)/unit-test.log unit > $(BUILD_DIR)/unit-test.summary || status=1; \
	cat $(BUILD_DIR)/unit-test.summary; exit $$status

# The protocol conformance suite: a Python client written from
# docs/PROTOCOL.md alone, against a real vtdbridged (dry-run backend).
protocol-test: unit-test
	@python3 -m pytest --version >/dev/null 2>&1 || pip install -q pytest
	@set -o pipefail; \
	python3 -m pytest -q Tests/protocol 2>&1 | tee $(BUILD_DIR)/protocol-test.log; \
	status=$$?; \
	scripts/test-summary --pytest $(BUILD_DIR)/protocol-test.log protocol > $(BUILD_DIR)/protocol-test.summary || status=1; \
	cat $(BUILD_DIR)/protocol-test.summary; exit $$status

test: unit-test protocol-test vm-test vm-systemd-test install-test fuzz
	@scripts/test-summary --total $(BUILD_DIR)/unit-test.summary $(BUILD_DIR)/protocol-test.summary $(BUILD_DIR)/vm-test.summary $(BUILD_DIR)/vm-systemd-test.summary $(BUILD_DIR)/install-test.summary $(BUILD_DIR)/fuzz.summary

clean:
	rm -rf $(BUILD_DIR)

# ---------------------------------------------------------------------------
# Install, uninstall, and checking the systemd unit.
#
#   make install   [PREFIX=/usr/local] [DESTDIR=] [UNITDIR=…] [WITH_SIM=1]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=] [UNITDIR=…]
#   make install-test   install and uninstall into scratch roots, checked (part of make test)
#   make verify-unit
#
# What goes where (DESTDIR is prepended to every path, for packaging):
#   $(PREFIX)/bin                  vtdbridged, vtdbridgectl, stripped; vtdbridge-sim (a
#                                  test tool: a fake VMM and the VM tests) only with WITH_SIM=1
#   $(UNITDIR)                     vtdbridged@.service, its ExecStart pointing at
#                                  $(PREFIX)/bin. Default $(PREFIX)/lib/systemd/system:
#                                  systemd searches /usr/local/lib/systemd/system
#                                  and /usr/lib/systemd/system, so PREFIX=/usr/local
#                                  (the default) and PREFIX=/usr work as they are.
#                                  For any other PREFIX pass UNITDIR=/etc/systemd/system.
#   /etc/vtd-bridge                vtdbridged.json.example. The instances' own
#                                  configs (/etc/vtd-bridge/NAME.json) are never
#                                  written or removed.
#   $(PREFIX)/share/doc/vtd-bridge CONFIG.md (the unit's Documentation=), PROTOCOL.md
#   $(PREFIX)/share/man/man1       one page per program, from its --help (generate-manual)
#   $(PREFIX)/share/bash-completion/completions, …/zsh/site-functions,
#   …/fish/vendor_completions.d    each program's --generate-completion-script
#
# The binaries are stripped (strip --strip-unneeded): vtdbridged's 40 MB
# (static Swift runtime) are 19 MB without DWARF and the symbol table. A
# crash backtrace then shows addresses instead of names; the build's
# .build/release/vtdbridged (same build id) symbolizes one.

BINDIR       ?= $(PREFIX)/bin
UNITDIR      ?= $(PREFIX)/lib/systemd/system
DOCDIR       ?= $(PREFIX)/share/doc/vtd-bridge
MANDIR       ?= $(PREFIX)/share/man
BASHCOMPDIR  ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR   ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR  ?= $(PREFIX)/share/fish/vendor_completions.d
CONFDIR      := /etc/vtd-bridge
WITH_SIM     ?=
SIM          := vtdbridge-sim
PROGRAMS     := vtdbridged vtdbridgectl
# What `make install` puts in BINDIR; uninstall removes the simulator too,
# whichever way it was installed.
INSTALLED    := $(PROGRAMS) $(if $(filter-out 0,$(WITH_SIM)),$(SIM))
DOCS         := CONFIG.md PROTOCOL.md
UNIT         := vtdbridged@.service
MAN_BUILD    := $(BUILD_DIR)/man

# $(call install_unit,ROOT): writes the unit into ROOT$(UNITDIR) with the
# install paths substituted, and fails if a placeholder is left.
install_unit = install -d -m 0755 "$(1)$(UNITDIR)" \
	&& sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' systemd/$(UNIT) > "$(1)$(UNITDIR)/$(UNIT)" \
	&& chmod 0644 "$(1)$(UNITDIR)/$(UNIT)" \
	&& ! grep -n '@[A-Z]*@' "$(1)$(UNITDIR)/$(UNIT)"

# Every file one program brings besides itself: its man page and completions.
program_files = $(MANDIR)/man1/$(1).1 $(BASHCOMPDIR)/$(1) $(ZSHCOMPDIR)/_$(1) $(FISHCOMPDIR)/$(1).fish

.PHONY: install uninstall man install-test verify-unit

# Man pages from the release binaries, by swift-argument-parser's own
# generate-manual tool (what `swift package plugin generate-manual` runs),
# with two fixes (scripts/man-pages). It reads each binary's
# --experimental-dump-help, so the tool itself is built in the debug
# configuration: that reuses the ArgumentParser `make build` and `make
# unit-test` compiled, where a release build of it compiled 167 modules
# again (5 min on 2 cores). Dated by the last commit, so that a rebuild of
# the same tree makes the same pages.
man: release
	@set -eo pipefail; bin="$$($(SWIFT) build -c release --static-swift-stdlib --show-bin-path $(SWIFT_FLAGS))"; \
	mkdir -p $(BUILD_DIR); $(SWIFT) build --product generate-manual $(SWIFT_FLAGS) > $(BUILD_DIR)/man-build.log 2>&1 \
	  || { cat $(BUILD_DIR)/man-build.log; exit 1; }; \
	scripts/no-warnings $(BUILD_DIR)/man-build.log; \
	tool="$$($(SWIFT) build --show-bin-path $(SWIFT_FLAGS))/generate-manual"; \
	date="$$(git log -1 --format=%cs 2>/dev/null || date +%F)"; \
	rm -rf "$(MAN_BUILD)"; scripts/man-pages "$$tool" "$$bin" "$(MAN_BUILD)" "$$date" $(PROGRAMS) $(SIM)

install: release man
	@set -e; bin="$$($(SWIFT) build -c release --static-swift-stdlib --show-bin-path $(SWIFT_FLAGS))"; \
	install -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)"; \
	for p in $(INSTALLED); do \
	  install -m 0755 "$$bin/$$p" "$(DESTDIR)$(BINDIR)/$$p"; \
	  strip --strip-unneeded "$(DESTDIR)$(BINDIR)/$$p"; \
	  install -m 0644 "$(MAN_BUILD)/$$p.1" "$(DESTDIR)$(MANDIR)/man1/$$p.1"; \
	  "$$bin/$$p" --generate-completion-script bash > "$(DESTDIR)$(BASHCOMPDIR)/$$p"; \
	  "$$bin/$$p" --generate-completion-script zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_$$p"; \
	  "$$bin/$$p" --generate-completion-script fish > "$(DESTDIR)$(FISHCOMPDIR)/$$p.fish"; \
	  chmod 0644 "$(DESTDIR)$(BASHCOMPDIR)/$$p" "$(DESTDIR)$(ZSHCOMPDIR)/_$$p" "$(DESTDIR)$(FISHCOMPDIR)/$$p.fish"; \
	  echo "installed $(DESTDIR)$(BINDIR)/$$p (stripped), its man page and bash, zsh and fish completions"; \
	done
	@$(call install_unit,$(DESTDIR)) && echo "installed $(DESTDIR)$(UNITDIR)/$(UNIT)"
	@install -d -m 0755 "$(DESTDIR)$(CONFDIR)" "$(DESTDIR)$(DOCDIR)"
	@install -m 0644 config/vtdbridged.json "$(DESTDIR)$(CONFDIR)/vtdbridged.json.example" && echo "installed $(DESTDIR)$(CONFDIR)/vtdbridged.json.example"
	@for d in $(DOCS); do install -m 0644 "docs/$$d" "$(DESTDIR)$(DOCDIR)/$$d" && echo "installed $(DESTDIR)$(DOCDIR)/$$d"; done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "next: cp $(CONFDIR)/vtdbridged.json.example $(CONFDIR)/NAME.json, edit it, then systemctl enable --now vtdbridged@NAME"

uninstall:
	@for p in $(PROGRAMS) $(SIM); do rm -f "$(DESTDIR)$(BINDIR)/$$p" $(foreach f,$(call program_files,$$p),"$(DESTDIR)$(f)"); done
	@rm -f "$(DESTDIR)$(UNITDIR)/$(UNIT)" "$(DESTDIR)$(CONFDIR)/vtdbridged.json.example" $(foreach d,$(DOCS),"$(DESTDIR)$(DOCDIR)/$(d)")
	@# Directories go only when empty: /etc/vtd-bridge keeps the instances'
	@# configs, and the shared ones (bin, man1, completions) other packages' files.
	@for d in "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(CONFDIR)"; do if [ -d "$$d" ]; then rmdir --ignore-fail-on-non-empty "$$d"; fi; done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "uninstalled from $(DESTDIR)$(PREFIX); kept: $(CONFDIR)/*.json, /var/lib/vtd-bridge"

# make install and make uninstall into scratch roots (scripts/install-test):
# stripped binaries that run, man pages, completions, docs, no simulator
# unless WITH_SIM=1, and nothing left after uninstall. Ends with
# "install: N passed, N failed". Cheap in make test: the release build is
# there already (vm-test made it).
install-test: release
	@if ! command -v groff >/dev/null 2>&1; then \
	  echo "installing groff-base to render the man pages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq groff-base; \
	fi
	@mkdir -p $(BUILD_DIR); rm -f $(BUILD_DIR)/install-test.summary
	@set -o pipefail; status=0; \
	MAKE="$(MAKE)" scripts/install-test | tee $(BUILD_DIR)/install-test.log || status=1; \
	grep -E "^install: [0-9]+ passed, [0-9]+ failed$$" $(BUILD_DIR)/install-test.log > $(BUILD_DIR)/install-test.summary \
	  || { echo "install: 0 passed, 1 failed" > $(BUILD_DIR)/install-test.summary; status=1; }; \
	exit $$status

# Checks the unit exactly as `make install` writes it, with
# `systemd-analyze verify`, offline (no running systemd needed). The check
# runs in a scratch root: systemd-analyze --root resolves ExecStart and the
# unit's dependencies inside it, so the root gets the installed unit,
# stand-in executables at $(BINDIR) and /bin/kill, ExecReload's (verify only
# checks that each command is executable; no release build needed) and a copy of the system's own units
# (sysinit.target, modprobe@.service, multi-user.target). verify exits 0 on
# warnings such as an unknown key, so any line it prints about the unit is a
# failure too. Then `systemd-analyze security` must rate the sandbox 2.5 or
# better (lower is tighter), so that hardening cannot quietly regress.
verify-unit:
	@if ! command -v systemd-analyze >/dev/null 2>&1; then \
	  echo "installing systemd for systemd-analyze"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; \
	fi
	@set -e; root="$$(mktemp -d)"; trap 'rm -rf "$$root"' EXIT; \
	$(call install_unit,$$root); \
	install -d -m 0755 "$$root$(BINDIR)"; \
	for p in $(PROGRAMS); do printf '#!/bin/sh\nexit 0\n' > "$$root$(BINDIR)/$$p"; chmod 0755 "$$root$(BINDIR)/$$p"; done; \
	install -d -m 0755 "$$root/bin"; printf '#!/bin/sh\nexit 0\n' > "$$root/bin/kill"; chmod 0755 "$$root/bin/kill"; \
	for d in /usr/lib/systemd/system /lib/systemd/system; do \
	  if [ -d "$$d" ]; then install -d "$$root$$d"; cp -a "$$d/." "$$root$$d/"; fi; \
	done; \
	instance="$(subst @.,@vm0.,$(UNIT))"; \
	echo "systemd-analyze verify --root=<scratch> $$instance ($(UNITDIR)/$(UNIT), ExecStart in $(BINDIR))"; \
	status=0; out="$$(systemd-analyze verify --root="$$root" "$$instance" 2>&1)" || status=$$?; \
	if [ -n "$$out" ]; then printf '%s\n' "$$out"; fi; \
	if [ $$status -ne 0 ]; then \
	  if printf '%s\n' "$$out" | grep -q 'not found'; then echo "hint: systemd does not search $(UNITDIR) (systemd-analyze unit-paths); pass UNITDIR=/etc/systemd/system"; fi; \
	  echo "verify-unit: FAILED: systemd-analyze verify exited $$status"; exit 1; \
	fi; \
	if printf '%s\n' "$$out" | grep -q 'vtdbridged'; then echo "verify-unit: FAILED: systemd-analyze verify warned about the unit"; exit 1; fi; \
	status=0; score="$$(systemd-analyze security --offline=yes --threshold=25 --root="$$root" "$$instance" 2>&1)" || status=$$?; \
	printf '%s\n' "$$score" | grep 'Overall exposure' || true; \
	if [ $$status -ne 0 ]; then printf '%s\n' "$$score"; echo "verify-unit: FAILED: exposure above 2.5"; exit 1; fi; \
	echo "verify-unit: OK"

# ---------------------------------------------------------------------------
# Test VM: real VFIO without a VFIO host. A QEMU (TCG) VM with an emulated
# intel-iommu gives its Linux kernel real VFIO; its "edu" PCI devices are
# bound to vfio-pci, and a script runs inside next to the release binaries.
# Everything downloaded or built lives in .cache/vm/ (git-ignored).
#
#   make vm-deps                   qemu-system-x86, busybox-static, cpio, xz-utils;
#                                  the newest Debian 6.1 kernel (scripts/vm/fetch-kernel)
#   make vm-image                  release build + .cache/vm/initramfs.cpio
#                                  (scripts/vm/build-initramfs; skipped when up to date)
#   make vm-run [CMD=script.sh]    boots the VM and runs script.sh in it (scripts/vm/run);
#                                  CMD defaults to scripts/vm/smoke.sh. VM_EDU (3) edu
#                                  devices, VM_TIMEOUT (600) seconds for the whole boot.
#                                  Exits with the script's status; log in .cache/vm/last.log.
#                                  VM_QEMU=1 also puts QEMU 11.1 in the VM (run --qemu);
#                                  VM_SYSTEMD=1 boots the systemd profile (run --systemd)
#   make qemu-deps                 QEMU 11.1 from trixie-backports for inside the VM, as a
#                                  cpio in ${VTD_CACHE:-/var/cache/vtd-bridge}/qemu-11.1/
#                                  (scripts/vm/fetch-qemu; ~2-3 min and ~420 MB once,
#                                  then nothing). Not part of vm-image, so that the other
#                                  VM targets stay fast; vm-test and vm-qemu-smoke need it.
#   make vm-qemu-smoke             boots the VM with QEMU inside (scripts/vm/qemu-smoke.sh)

VM_EDU       ?= 3
VM_TIMEOUT   ?= 600
VM_QEMU      ?=
CMD          ?= scripts/vm/smoke.sh
VM_SYSTEMD   ?=
# vm-run provisions QEMU only when asked (VM_QEMU set and not 0), and the
# systemd profile likewise (VM_SYSTEMD).
VM_QEMU_DEPS := $(if $(filter-out 0,$(VM_QEMU)),qemu-deps)
VM_SYSTEMD_DEPS := $(if $(filter-out 0,$(VM_SYSTEMD)),vm-systemd-image)

.PHONY: vm-deps vm-image vm-run qemu-deps vm-qemu-smoke

vm-deps:
	@scripts/vm/deps

# release runs after vm-deps, not beside it (-j): both may call apt-get.
vm-image: vm-deps
	@$(MAKE) --no-print-directory release
	@scripts/vm/build-initramfs

# fetch-qemu needs cpio (vm-deps), and its own apt-get waits for vm-deps'.
qemu-deps: vm-deps
	@scripts/vm/fetch-qemu

vm-run: vm-image $(VM_QEMU_DEPS) $(VM_SYSTEMD_DEPS)
	@scripts/vm/run --edu "$(VM_EDU)" --timeout "$(VM_TIMEOUT)" $(if $(VM_QEMU_DEPS),--qemu) $(if $(VM_SYSTEMD_DEPS),--systemd) "$(CMD)"

vm-qemu-smoke: vm-image qemu-deps
	@scripts/vm/run --qemu --edu 1 --timeout "$(VM_TIMEOUT)" scripts/vm/qemu-smoke.sh

# ---------------------------------------------------------------------------
# Real devices. `make vm-test` (part of `make test`) runs the real-device
# scenarios in the VM (scripts/vm/real-devices.sh), then checks
# `vtdbridgectl walk` against the page tables the VM kernel's own
# intel-iommu driver wrote for the daemon's containers
# (scripts/vm/check-linux-tables). `make demo` runs a short, readable subset.
# A VM that cannot start is a failure with its reason, never a skip.
# vm-test boots with QEMU 11.1 inside (run --qemu; make qemu-deps provisions
# it on a fresh machine), for the scenarios that drive a real QEMU.

VM_RAM_FILE ?= /dev/shm/vtd-bridge-vm-ram-$(shell id -u)

.PHONY: vm-test demo demo-qemu demo-l2

vm-test: vm-image qemu-deps
	@mkdir -p $(BUILD_DIR); rm -f $(BUILD_DIR)/vm-test.summary "$(VM_RAM_FILE)"
	@set -o pipefail; status=0; \
	VM_APPEND="iomem=relaxed" VM_RAM_FILE="$(VM_RAM_FILE)" scripts/vm/run --edu 3 --timeout "$(VM_TIMEOUT)" \
	  --log $(BUILD_DIR)/vm-test.log scripts/vm/real-devices.sh | tee $(BUILD_DIR)/vm-test.out || status=1; \
	line=$$(grep -E "^vmtest: [0-9]+ passed, [0-9]+ failed$$" $(BUILD_DIR)/vm-test.out | tail -n 1); \
	if [ -n "$$line" ]; then echo "vm: $${line#vmtest: }" >> $(BUILD_DIR)/vm-test.summary; \
	else echo "vm: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-test.summary; echo "vm-test: the VM reported no result (see $(BUILD_DIR)/vm-test.log)"; status=1; fi; \
	if [ -f "$(VM_RAM_FILE)" ]; then \
	  scripts/vm/check-linux-tables $(BUILD_DIR)/vm-test.log "$(VM_RAM_FILE)" "$$($(SWIFT) build -c release --show-bin-path)/vtdbridgectl" \
	    | tee $(BUILD_DIR)/linux-tables.out || status=1; \
	  grep -E "^linux-tables: " $(BUILD_DIR)/linux-tables.out >> $(BUILD_DIR)/vm-test.summary || echo "linux-tables: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-test.summary; \
	else echo "linux-tables: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-test.summary; echo "vm-test: no guest RAM file to check"; status=1; fi; \
	rm -f "$(VM_RAM_FILE)"; \
	scripts/vm/run --qemu --edu 1 --timeout "$(VM_TIMEOUT)" --log $(BUILD_DIR)/vm-qemu-test.log \
	  scripts/vm/qemu-vfio-user.sh | tee $(BUILD_DIR)/vm-qemu-test.out || status=1; \
	line=$$(grep -E "^qemu-test: [0-9]+ passed, [0-9]+ failed" $(BUILD_DIR)/vm-qemu-test.out | tail -n 1 | sed -E 's/^qemu-test: ([0-9]+ passed, [0-9]+ failed).*/\1/'); \
	if [ -n "$$line" ]; then echo "qemu-vfio-user: $$line" >> $(BUILD_DIR)/vm-test.summary; \
	else echo "qemu-vfio-user: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-test.summary; echo "vm-test: the QEMU run reported no result (see $(BUILD_DIR)/vm-qemu-test.log)"; status=1; fi; \
	cat $(BUILD_DIR)/vm-test.summary; exit $$status

# The QEMU path in a short transcript: vtdbridged serves the VM's real edu
# to an unmodified QEMU 11.1 (vfio-user-pci behind a caching-mode
# intel-iommu), and a qtest guest maps, DMAs and checks.
# The whole real stack, slowly (4-7 min under nested TCG): an L2 Linux
# under QEMU 11.1 whose own intel-iommu driver maps the buffers of a VFIO
# program doing edu DMA, through vtdbridged (scripts/vm/l2-guest.sh).
demo-l2: vm-image qemu-deps
	@set -o pipefail; scripts/vm/run --qemu --edu 1 --timeout 1600 --add .cache/vm/kernel/vmlinux:/l2/vmlinux \
	  scripts/vm/l2-guest.sh 2>&1 | grep -vE '^\[ *[0-9]+\.[0-9]+\]'

demo-qemu: vm-image qemu-deps
	@set -o pipefail; scripts/vm/run --qemu --edu 1 --timeout "$(VM_TIMEOUT)" \
	  --add scripts/vm/qemu-vfio-user.sh:/vmtest/qemu-vfio-user.sh scripts/vm/demo-qemu.sh 2>&1 \
	  | grep -vE '^\[ *[0-9]+\.[0-9]+\]|^qemu-system'

# The build goes to a log, so that the transcript is all there is to read
# (a cold build prints hundreds of lines; its errors are shown if it fails).
demo:
	@mkdir -p $(BUILD_DIR); echo "make demo: building the release binaries and the test VM (log: $(BUILD_DIR)/demo-build.log) ..."; SECONDS=0; \
	if ! $(MAKE) --no-print-directory vm-image > $(BUILD_DIR)/demo-build.log 2>&1; then \
	  tail -n 40 $(BUILD_DIR)/demo-build.log; echo "make demo: the build failed (whole log: $(BUILD_DIR)/demo-build.log)"; exit 1; \
	fi; echo "make demo: built in $${SECONDS} s; booting the VM"
	@set -o pipefail; scripts/vm/run --edu 3 --timeout "$(VM_TIMEOUT)" scripts/vm/demo.sh 2>&1 | grep -vE '^\[ *[0-9]+\.[0-9]+\]|^qemu-system'
	@echo ""
	@echo "What to try next:"
	@echo "  make demo-qemu     an unmodified QEMU 11.1 uses the real edu through the daemon (vfio-user)"
	@echo "  make demo-l2       an L2 Linux's own intel-iommu driver maps DMA buffers through QEMU and the daemon (4-7 min)"
	@echo "  make vm-run CMD=script.sh   your own script in the same VM (vtdbridged, vtdbridgectl and vtdbridge-sim are in /bin)"
	@echo "  README.md, \"Run the daemon\": install it, write /etc/vtd-bridge/NAME.json, systemctl start vtdbridged@NAME"

# ---------------------------------------------------------------------------
# The systemd profile of the test VM (scripts/vm/README.md, "The systemd
# profile"): Debian bookworm with systemd 252 as PID 1, the unit and binaries
# exactly as `make install` writes them, `systemctl start vtdbridged@vm0`.
#
#   make vm-systemd-deps    the bookworm root (debootstrap minbase + systemd, udev, kmod,
#                           dbus, procps; users vmm and operator in group kvm) as a cpio in
#                           $${VTD_CACHE:-/var/cache/vtd-bridge}/systemd-root-bookworm/
#                           (scripts/vm/build-systemd-root; ~2-4 min once, then nothing;
#                           installs debootstrap if missing)
#   make vm-systemd-image   release build + `make install WITH_SIM=1 DESTDIR=.cache/vm/install
#                           PREFIX=/usr/local` (the VM's VMM is vtdbridge-sim), which
#                           run --systemd appends to the root
#   make vm-systemd-test    boots it with QEMU 11.1 inside and 2 edu devices and runs
#                           scripts/vm/systemd-service.sh, then scripts/vm/systemd-restarts.sh
#                           (part of make test); writes "systemd: N passed, N failed" and
#                           "systemd-restarts: N passed, N failed" to
#                           $(BUILD_DIR)/vm-systemd-test.summary
#   make vm-run VM_SYSTEMD=1 CMD=script.sh   any script under this profile

VM_INSTALL := $(CURDIR)/.cache/vm/install

.PHONY: vm-systemd-deps vm-systemd-image vm-systemd-test

# build-systemd-root needs cpio (vm-deps); its own apt-get waits for vm-deps'.
vm-systemd-deps: vm-deps
	@scripts/vm/build-systemd-root

# The tree is rewritten whole each time, so that nothing stale stays in it
# (install builds the release binaries first). After vm-image, which builds
# them too: two swift builds must not share .build (make -j test).
vm-systemd-image: vm-systemd-deps vm-image
	@rm -rf "$(VM_INSTALL)"
	@$(MAKE) --no-print-directory install WITH_SIM=1 DESTDIR="$(VM_INSTALL)" PREFIX=/usr/local UNITDIR=/usr/local/lib/systemd/system

vm-systemd-test: vm-systemd-image qemu-deps
	@mkdir -p $(BUILD_DIR); rm -f $(BUILD_DIR)/vm-systemd-test.summary
	@set -o pipefail; status=0; SECONDS=0; \
	scripts/vm/run --systemd --qemu --edu 2 --timeout "$(VM_TIMEOUT)" --log $(BUILD_DIR)/vm-systemd-test.log \
	  --add scripts/vm/systemd-service.sh --add scripts/vm/systemd-restarts.sh --add scripts/vm/unit-helper.sh \
	  scripts/vm/systemd-all.sh | tee $(BUILD_DIR)/vm-systemd-test.out || status=1; \
	: > $(BUILD_DIR)/vm-systemd-test.summary; \
	for name in systemd systemd-restarts; do \
	  line=$$(grep -E "^$$name: [0-9]+ passed, [0-9]+ failed$$" $(BUILD_DIR)/vm-systemd-test.out | tail -n 1); \
	  if [ -n "$$line" ]; then echo "$$line" >> $(BUILD_DIR)/vm-systemd-test.summary; \
	  else echo "$$name: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-systemd-test.summary; echo "vm-systemd-test: the VM reported no $$name result (see $(BUILD_DIR)/vm-systemd-test.log)"; status=1; fi; \
	done; \
	if [ $$status -ne 0 ] && ! grep -qv " 0 failed$$" $(BUILD_DIR)/vm-systemd-test.summary; then \
	  echo "systemd-vm: 0 passed, 1 failed" >> $(BUILD_DIR)/vm-systemd-test.summary; echo "vm-systemd-test: the run failed although every check passed (see $(BUILD_DIR)/vm-systemd-test.log)"; fi; \
	echo "vm-systemd-test: $${SECONDS}s"; cat $(BUILD_DIR)/vm-systemd-test.summary; exit $$status

# ---------------------------------------------------------------------------
# Fuzzing with libFuzzer and AddressSanitizer (docs/RELIABILITY.md, "Fuzzing"):
# FuzzFrames (event-channel framing and codec), FuzzControl (control-socket
# lines, JSON, requests), FuzzSync (VT-d walk and shadow sync), FuzzVFIOUser
# (vfio-user framing and codec). The runtimes ship with the Swift toolchain;
# scripts/fuzz does the work.
#
#   make fuzz [FUZZ_SECONDS=60]   build, then run each target FUZZ_SECONDS (part of `make test`);
#                                 fails on a crash, hang or OOM and prints the saved input
#                                 ($(FUZZ_BUILD)/crashes/TARGET/…) and how to reproduce it.
#                                 A fixed crash's input goes to Tests/Fuzz/regressions/TARGET/.
#   make fuzz-regress             replay Tests/Fuzz/corpus/* and Tests/Fuzz/regressions/*
#   make fuzz-seeds               regenerate Tests/Fuzz/corpus/* (a normal build, SWIFT_FLAGS)

FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= .build-fuzz
FUZZ_TARGETS ?= FuzzFrames FuzzControl FuzzSync FuzzVFIOUser
FUZZ_ENV      = SWIFT="$(SWIFT)" FUZZ_BUILD="$(FUZZ_BUILD)" FUZZ_TARGETS="$(FUZZ_TARGETS)"

.PHONY: fuzz fuzz-regress fuzz-seeds

fuzz: deps
	@mkdir -p $(BUILD_DIR); rm -f $(BUILD_DIR)/fuzz.summary
	@$(FUZZ_ENV) scripts/fuzz build || { echo "fuzz: 0 passed, 1 failed" > $(BUILD_DIR)/fuzz.summary; echo "fuzz: the build failed"; exit 1; }
	@$(FUZZ_ENV) scripts/fuzz run $(FUZZ_SECONDS) $(BUILD_DIR)/fuzz.summary

fuzz-regress: deps
	@$(FUZZ_ENV) scripts/fuzz build && $(FUZZ_ENV) scripts/fuzz regress

fuzz-seeds: deps
	@$(FUZZ_ENV) scripts/fuzz seeds $(SWIFT_FLAGS)

# ---------------------------------------------------------------------------
# Sanitizers (docs/RELIABILITY.md, "Sanitizers"). Not part of `make test`,
# to keep CI in time.
#
#   make check   the unit tests (`make unit-test`'s `swift test`) under
#                AddressSanitizer with LeakSanitizer (scratch .build-asan), then
#                under ThreadSanitizer (scratch .build-tsan). Prints
#                "asan: N passed, N failed" and "tsan: N passed, N failed"; fails
#                if either has a failed test or any sanitizer report.
#
# The tests spawn vtdbridged, vtdbridgectl and vtdbridge-sim from the same
# scratch directory, so those run instrumented too. Every instrumented
# process writes its reports to SCRATCH/sanitizer-logs/{asan,tsan}.PID
# (log_path): a report from a child whose log the test deletes with its
# temporary directory is still found, printed, and fails the run. Leaks that
# Foundation and XCTest make themselves are suppressed by name in
# Tests/sanitizers/lsan.supp; ours are not. SWIFT_BACKTRACE=enable=no: the
# Swift backtracer otherwise takes the sanitizers' signals and exit codes.

CHECK_SANITIZERS := asan tsan
CHECK_FLAG_asan  := address
CHECK_FLAG_tsan  := thread
# $(call CHECK_ENV_x,LOGDIR): the runtime options of sanitizer x.
CHECK_ENV_asan    = ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$(1)/asan \
                    LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp:print_suppressions=0
CHECK_ENV_tsan    = TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1:log_path=$(1)/tsan:suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp:print_suppressions=0

.PHONY: check $(CHECK_SANITIZERS:%=check-%)

check:
	@status=0; for s in $(CHECK_SANITIZERS); do $(MAKE) --no-print-directory check-$$s || status=1; done; \
	cat $(CHECK_SANITIZERS:%=.build-%/check.summary) 2>/dev/null; exit $$status

$(CHECK_SANITIZERS:%=check-%): check-%: deps
	@set -o pipefail; dir=.build-$*; logs="$(CURDIR)/$$dir/sanitizer-logs"; \
	mkdir -p $$dir; rm -rf "$$logs" $$dir/check.summary; mkdir -p "$$logs"; \
	echo "$*: building with --sanitize=$(CHECK_FLAG_$*) in $$dir"; SECONDS=0; \
	$(SWIFT) build --build-tests --sanitize=$(CHECK_FLAG_$*) --scratch-path $$dir $(SWIFT_FLAGS) 2>&1 \
	  | tee $$dir/check-build.log | sed -e '/Cannot export local symbol/d'; \
	status=$$?; built=$$SECONDS; SECONDS=0; rm -f $$dir/check.log; \
	if [ $$status -eq 0 ]; then \
	  env SWIFT_BACKTRACE=enable=no $(call CHECK_ENV_$*,$$logs) \
	    $(SWIFT) test --disable-swift-testing --skip-build --sanitize=$(CHECK_FLAG_$*) --scratch-path $$dir $(SWIFT_FLAGS) 2>&1 \
	    | tee $$dir/check.log || status=$$?; \
	fi; \
	scripts/test-summary $$dir/check.log $* > $$dir/check.summary || status=1; \
	reports=$$(ls "$$logs" | wc -l); \
	for f in "$$logs"/*; do [ -f "$$f" ] && { echo "=== $* report $$f"; cat "$$f"; }; done; \
	if [ $$reports -gt 0 ]; then echo "$*: $$reports sanitizer report(s), in $$logs" >> $$dir/check.summary; status=1; \
	elif [ $$status -ne 0 ] && [ -f $$dir/check.log ]; then echo "$*: swift test exited $$status" >> $$dir/check.summary; fi; \
	echo "$*: build $$built s, tests $$SECONDS s"; cat $$dir/check.summary; exit $$status

# ---------------------------------------------------------------------------
# Benchmarks (not tests: nothing here asserts a time). Prints one table and
# writes it, with date and machine, to docs/BENCHMARKS.md. The VM part
# (scripts/vm/bench.sh) runs first; its BENCH-ROW lines join the host figures.
# The VM boots with QEMU 11.1 inside (qemu-deps): the vfio-user figures drive
# a real QEMU's vfio-user-pci.

.PHONY: bench

bench: vm-image qemu-deps
	@if ! command -v strace >/dev/null 2>&1; then \
	  echo "installing strace for the per-invalidation syscall counts"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace; \
	fi
	@if ! command -v valgrind >/dev/null 2>&1; then \
	  echo "installing valgrind for the per-invalidation instruction counts"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; \
	fi
	@mkdir -p $(BUILD_DIR)
	@scripts/vm/run --qemu --edu 2 --timeout 2400 --log $(BUILD_DIR)/vm-bench.log scripts/vm/bench.sh | grep -E "^(BENCH-ROW|vm-run)"
	@bin="$$($(SWIFT) build -c release --show-bin-path)"; \
	"$$bin/vtdbridge-bench" --bin "$$bin" --vm-results $(BUILD_DIR)/vm-bench.log --markdown docs/BENCHMARKS.md.table
	@scripts/bench-report docs/BENCHMARKS.md.table docs/BENCHMARKS.md && rm -f docs/BENCHMARKS.md.table
	@echo "wrote docs/BENCHMARKS.md"
