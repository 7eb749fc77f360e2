# qga — see README.md. `make test` is what CI runs.
CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
SOCK ?= /tmp/qga.sock

.PHONY: all build release test unit run bench bench-vm static e2e install clean mutants fuzz soak

all: release

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Unit tests, then the integration suites (they start target/debug/qga on
# unix sockets; docs/testing.md). Tests that cannot run here (not root, no
# qemu-ga fetched by scripts/fetch-qemu-ga.sh) record a skip: the count and
# the reasons are printed at the end. Under CI=true a missing prerequisite
# is a failure instead.
SKIP_LOG ?= $(CURDIR)/target/tmp/qga-test-skips.log
test:
	$(CARGO) build --release
	$(CARGO) build --workspace --bins
	@mkdir -p $(dir $(SKIP_LOG)) && rm -f $(SKIP_LOG)
	@QGA_TEST_SKIP_LOG=$(SKIP_LOG) $(CARGO) test --lib --bins --tests -- --test-threads=4; rc=$$?; \
		bash scripts/test-skips.sh $(SKIP_LOG); exit $$rc

unit:
	$(CARGO) test --lib

# `make mutants`: mutation testing with cargo-mutants (installed from
# crates.io when missing) over the protocol, json, process-table, reply
# ordering and channel code; informational, not in CI (docs/testing.md).
# Bounded: MUTANTS_MINUTES of wall time (a random sample when the time runs
# out), one job, niced. Source globs and the suites each mutant is tested
# with are variables, so file moves in src/ need one edit here.
MUTANTS_FILES ?= crates/protocol/src/protocol/** crates/protocol/src/json/** src/exec/** src/agent/** src/channel/**
MUTANTS_TESTS ?= --lib --test protocol --test exec --test extensions --test channels --test golden_replay
MUTANTS_MINUTES ?= 60
MUTANTS_OUT ?= target/mutants
mutants:
	@command -v cargo-mutants >/dev/null 2>&1 || $(CARGO) install --locked cargo-mutants
	@mkdir -p $(MUTANTS_OUT)
	-nice timeout -s INT -k 60 $(MUTANTS_MINUTES)m $(CARGO) mutants --shuffle -j 1 -o $(MUTANTS_OUT) \
		--timeout-multiplier 3 --build-timeout 600 \
		$(foreach f,$(MUTANTS_FILES),-f '$(f)') $(foreach a,$(MUTANTS_TESTS),--cargo-test-arg=$(a))
	@bash scripts/mutants-summary.sh $(MUTANTS_OUT)/mutants.out

run: release
	./target/release/qga -m unix-listen -p $(SOCK) -t /tmp

clean:
	$(CARGO) clean

# ---- Minimal guests (docs/vm.md) -------------------------------------------
# ARCH: a row of scripts/arches.tsv (x86_64, aarch64, riscv64). x86_64 files
# sit at the top of each folder, the others in a subfolder named by ARCH.
# `make static`: a static, stripped musl qga at $(STATIC_BIN), built in the
# Debian sid chroot that scripts/static/build.sh prepares and caches under
# target/static-env/. `make static-glibc`: the glibc static-pie (x86_64).
ARCH ?= x86_64
SUB := $(if $(filter x86_64,$(ARCH)),,/$(ARCH))
STATIC_BIN ?= target/static$(SUB)/qga
# The minimal build (no `controls` feature: no exec policy, confinement or audit trail)
# that the initramfs ships; x86_64 must stay within STATIC_BUDGET bytes.
STATIC_MIN_BIN ?= target/static-min$(SUB)/qga
STATIC_BUDGET ?= 655360
GLIBC_BIN ?= target/static/glibc/qga
E2E_DIR ?= target/e2e
E2E_WORK ?= $(E2E_DIR)$(SUB)
INITRAMFS ?= target$(SUB)/initramfs.cpio.gz
KERNEL_DIR ?= $(E2E_WORK)/kernel/current
BUSYBOX ?= $(if $(SUB),$(E2E_WORK)/busybox,/bin/busybox)
QEMU_USER := $(shell awk -v a=$(ARCH) '$$1 == a {print $$7}' scripts/arches.tsv)
GNU_TARGET := x86_64-unknown-linux-gnu
DIST_DIR ?= target/dist
DIST_ARCHES ?= $(shell awk '!/^\#/ && $$1 !~ /-/ {print $$1}' scripts/arches.tsv)

.PHONY: initramfs static-glibc static-check static-minimal dist

static:
	bash scripts/static/build.sh $(ARCH) $(dir $(STATIC_BIN))

# `make static-minimal`: $(STATIC_MIN_BIN), the initramfs build; fails if
# the x86_64 one is over the 640 KiB budget. The full build ($(STATIC_BIN),
# with the controls feature) is what the VM suites and the packages use.
static-minimal:
	QGA_STATIC_CARGOFLAGS=--no-default-features bash scripts/static/build.sh $(ARCH) $(dir $(STATIC_MIN_BIN))
	@size=$$(stat -c %s $(STATIC_MIN_BIN)); full=$$(stat -c %s $(STATIC_BIN) 2>/dev/null || echo '?'); \
	echo "static-minimal: $(STATIC_MIN_BIN): $$size bytes (budget $(STATIC_BUDGET) on x86_64); full build: $$full bytes"; \
	if [ "$(ARCH)" = x86_64 ] && [ "$$size" -gt $(STATIC_BUDGET) ]; then \
		echo "static-minimal: $$size bytes is over the budget of $(STATIC_BUDGET)" >&2; exit 1; fi

static-glibc:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --bin qga --target $(GNU_TARGET)
	@mkdir -p $(dir $(GLIBC_BIN))
	cp target/$(GNU_TARGET)/release/qga $(GLIBC_BIN)
	@if readelf -lW $(GLIBC_BIN) | grep -q INTERP; then echo "static-glibc: $(GLIBC_BIN) is NOT static" >&2; exit 1; fi
	@echo "static-glibc: $(GLIBC_BIN): $$(stat -c %s $(GLIBC_BIN)) bytes (glibc static-pie, stripped)"

# `make static-check`: the protocol, exec and child-fd tests against the
# static binary (a foreign one under qemu-user; its RSS is not the guest's).
STATIC_CHECK_TESTS ?= --test protocol --test exec
static-check: static
	@if [ "$(QEMU_USER)" != - ]; then \
		command -v $(QEMU_USER) >/dev/null || bash scripts/e2e/setup.sh --arch $(ARCH) --qemu; \
		printf '#!/bin/sh\n# no PWD from this shell in the agent'"'"'s environment\nexec /usr/bin/env -u PWD %s %s "$$@"\n' \
			$$(command -v $(QEMU_USER)) $(abspath $(STATIC_BIN)) > $(STATIC_BIN)-user; \
		chmod 755 $(STATIC_BIN)-user; bin=$(abspath $(STATIC_BIN))-user; \
	else bin=$(abspath $(STATIC_BIN)); fi; \
	QGA_TEST_BIN=$$bin $(CARGO) test $(STATIC_CHECK_TESTS)

# `make initramfs`: the minimal static qga as /init + static busybox + the virtio
# modules of the Debian kernel of scripts/arches.tsv (fetched, never installed).
initramfs: static-minimal
	bash scripts/e2e/setup.sh --arch $(ARCH) --busybox --kernel
	python3 scripts/initramfs.py --init $(STATIC_MIN_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --out $(INITRAMFS)
	@echo "initramfs: $(INITRAMFS) (kernel: $$(ls $(KERNEL_DIR)/boot/vmlinu*))"

# `make e2e`: installs what it needs, boots TCG guests whose /init is qga.
e2e: static
	bash scripts/e2e/setup.sh --arch $(ARCH) --all
	$(CARGO) build --release --bins || echo "e2e: warning: could not build every binary; checks needing qgactl will skip"
	python3 scripts/e2e/run.py --arch $(ARCH) --qga $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --work $(E2E_WORK)

# `make dist`: per architecture the static qga, its Debian package
# (scripts/distro/deb.sh) and its initramfs, a static x86_64 qgactl, and
# SHA256SUMS, in $(DIST_DIR) (README.md).
dist:
	rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	@set -e; for a in $(DIST_ARCHES); do \
		$(MAKE) --no-print-directory static initramfs ARCH=$$a; \
		sub=$$( [ $$a = x86_64 ] || echo /$$a ); \
		cp target/static$$sub/qga $(DIST_DIR)/qga-$$a; \
		cp target$$sub/initramfs.cpio.gz $(DIST_DIR)/initramfs-$$a.cpio.gz; \
		bash scripts/distro/deb.sh $$a target/static$$sub/qga $(DIST_DIR) >/dev/null; \
	done
	bash scripts/static/build.sh x86_64 target/static/qgactl-dist qgactl
	cp target/static/qgactl-dist/qgactl $(DIST_DIR)/qgactl-x86_64
	cd $(DIST_DIR) && sha256sum qga-* qga_*.deb initramfs-* qgactl-* > SHA256SUMS && cat SHA256SUMS && ls -l

# `make install`: the binary, the systemd unit and the udev rule.
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
install:
	$(CARGO) build --release --bin qga --bin qgactl
	install -D -m 0755 target/release/qga $(DESTDIR)$(BINDIR)/qga
	install -D -m 0755 target/release/qgactl $(DESTDIR)$(BINDIR)/qgactl
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(UDEVRULESDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/qga.service.in > $(DESTDIR)$(UNITDIR)/qga.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/qga.service
	install -m 0644 packaging/60-qga.rules $(DESTDIR)$(UDEVRULESDIR)/60-qga.rules

# `make bench`: qga against Debian's qemu-ga (when scripts/fetch-qemu-ga.sh
# fetched it; otherwise qga only, with a note saying how to get it) and the
# machine's floors, same workloads, alternating, in one run. Builds release
# and, when it builds, the static binary; installs nothing. The table is
# printed and written to target/bench/agents.md. Informational: a missed
# target is printed as MISS, never a failure. QGA_BENCH_QUICK=1: fewer reps.
bench:
	$(CARGO) build --release
	-@$(MAKE) --no-print-directory static
	@$(CARGO) bench --bench agents || echo "bench: the harness did not complete (see above)"

# `make bench-vm`: qga against Debian's qemu-ga 10.0.2 and 7.2 inside TCG
# guests booted from the same kernel and initramfs (only the agent differs),
# workloads alternated for BENCH_VM_ROUNDS rounds; medians, ratios and the
# targets of issue 15 in target/bench/vm.md (scripts/bench/vm.py,
# BENCHMARKS.md). Informational: a missed target is not a failure.
BENCH_VM_ROUNDS ?= 5
bench-vm: static
	bash scripts/e2e/setup.sh --qemu --busybox --kernel
	bash scripts/fetch-qemu-ga.sh target/ref >/dev/null
	bash scripts/static/build.sh x86_64 target/static/qgactl-dist qgactl qga-pty-floor
	$(CARGO) build --release --bins
	python3 scripts/bench/vm.py --rounds $(BENCH_VM_ROUNDS) --qga $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR)

# `make fuzz`: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (needs
# `cargo +nightly` and cargo-fuzz; FUZZ_INSTALL=1 installs cargo-fuzz).
# Fails on a crash, a timeout (FUZZ_TIMEOUT s per input) or RSS over
# FUZZ_RSS_MB; prints execs/s and coverage per target. See fuzz/README.md.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

# `make soak`: informational mixed load against the release binary for
# SOAK_SECONDS (default 600), printing agent RSS, fds and throughput every
# 10 s. Not part of CI's pass/fail.
SOAK_SECONDS ?= 600
soak:
	$(CARGO) build --release --bin qga
	SOAK_SECONDS=$(SOAK_SECONDS) python3 scripts/soak.py --qga target/release/qga

# `make e2e-libvirt`: qga under Debian's libvirt (installed without systemd
# when missing; libvirtd runs in a private mount namespace with its state
# under $(E2E_DIR)/libvirt): a TCG domain whose /init is qga, checked with
# virsh's agent commands, then the same with Debian's qemu-ga as the agent,
# and the agent-only outputs compared (scripts/e2e/under_libvirt.py,
# docs/vm.md).
.PHONY: e2e-libvirt
e2e-libvirt: static
	bash scripts/e2e/setup.sh --qemu --busybox --kernel
	bash scripts/fetch-qemu-ga.sh target/ref >/dev/null
	python3 scripts/e2e/under_libvirt.py --agent both --qga $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --work $(E2E_DIR)/libvirt

# `make e2e-disks`: guest-get-disks and guest-get-fsinfo, qga against
# Debian's qemu-ga 10.0.2 byte for byte, in guests with virtio-blk,
# virtio-scsi, IDE, NVMe and (Debian's generic kernel, fetched) AHCI disks
# (scripts/e2e/disks.py). Not in CI: it downloads a 70 MB kernel package.
.PHONY: e2e-disks
e2e-disks: static
	bash scripts/e2e/setup.sh --qemu --busybox --kernel
	bash scripts/fetch-qemu-ga.sh target/ref
	python3 scripts/e2e/disks.py --qga $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --generic-kernel --work $(E2E_DIR)/disks

# ---- Debian package and a Debian guest with systemd (docs/distro.md) ------
# `make deb [ARCH=…]`: $(DEB_DIR)/qga_<version>_<debian-arch>.deb of the
# static musl qga (scripts/distro/deb.sh: dpkg-deb, no debhelper), then
# lintian on it: no error allowed (lintian is installed when missing).
# `make e2e-distro`: a Debian trixie image (mmdebstrap, cached under
# $(DISTRO_DIR), rebuilt when its recipe changes) booted under TCG with the
# kernel of the other suites; qga's package installed with apt, checked
# with udev/systemd, libvirt's agent commands, upgrade, switch and purge,
# and the same checks against Debian's qemu-guest-agent in the same image
# (scripts/distro/e2e.py).
DEB_DIR ?= target/deb$(SUB)
DISTRO_DIR ?= target/distro
.PHONY: deb e2e-distro
deb: static
	@command -v lintian >/dev/null 2>&1 || bash scripts/apt.sh install -q --no-remove --no-install-recommends lintian \
		|| { bash scripts/apt.sh update -q && bash scripts/apt.sh install -q --no-remove --no-install-recommends lintian; }
	@deb=$$(bash scripts/distro/deb.sh $(ARCH) $(STATIC_BIN) $(DEB_DIR)) && echo "deb: lintian $$deb" && \
		{ rc=0; lintian --fail-on error --pedantic -I $$deb > $(DEB_DIR)/lintian.txt 2>&1 || rc=$$?; \
		grep -v 'root privileges is not recommended' $(DEB_DIR)/lintian.txt; echo "deb: lintian exit $$rc"; exit $$rc; }

e2e-distro: static
	bash scripts/e2e/setup.sh --qemu --busybox --kernel
	bash scripts/distro/run.sh $(STATIC_BIN) $(KERNEL_DIR) $(DISTRO_DIR)
