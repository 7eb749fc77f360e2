# qga — see README.md. `make test` is what CI runs.
CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
SOCK ?= /tmp/qga.sock

.PHONY: all build release test unit run bench static e2e install clean

all: release

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Unit tests, then the integration suites (they start target/debug/qga on
# unix sockets); golden replays use Debian's qemu-ga when it was fetched by
# scripts/fetch-qemu-ga.sh (they skip with a note otherwise).
test:
	$(CARGO) build --release
	$(CARGO) test --lib --bins --tests -- --test-threads=4

unit:
	$(CARGO) test --lib

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
GLIBC_BIN ?= target/static/glibc/qga
E2E_DIR ?= target/e2e
E2E_WORK ?= $(E2E_DIR)$(SUB)
INITRAMFS ?= target$(SUB)/initramfs.cpio.gz
KERNEL_DIR ?= $(E2E_WORK)/kernel/current
BUSYBOX ?= $(if $(SUB),$(E2E_WORK)/busybox,/bin/busybox)
QEMU_USER := $(shell awk -v a=$(ARCH) '$$1 == a {print $$7}' scripts/arches.tsv)
GNU_TARGET := x86_64-unknown-linux-gnu
DIST_DIR ?= target/dist
DIST_ARCHES ?= $(shell awk '!/^\#/ {print $$1}' scripts/arches.tsv)

.PHONY: initramfs static-glibc static-check dist

static:
	bash scripts/static/build.sh $(ARCH) $(dir $(STATIC_BIN))

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

# `make initramfs`: static qga as /init + static busybox + the virtio
# modules of the Debian kernel of scripts/arches.tsv (fetched, never installed).
initramfs: static
	bash scripts/e2e/setup.sh --arch $(ARCH) --busybox --kernel
	python3 scripts/initramfs.py --init $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --out $(INITRAMFS)
	@echo "initramfs: $(INITRAMFS) (kernel: $$(ls $(KERNEL_DIR)/boot/vmlinu*))"

# `make e2e`: installs what it needs, boots TCG guests whose /init is qga.
e2e: static
	bash scripts/e2e/setup.sh --arch $(ARCH) --all
	$(CARGO) build --release --bins || echo "e2e: warning: could not build every binary; checks needing qgactl will skip"
	python3 scripts/e2e/run.py --arch $(ARCH) --qga $(STATIC_BIN) --busybox $(BUSYBOX) --kernel $(KERNEL_DIR) --work $(E2E_WORK)

# `make dist`: per architecture the static qga and its initramfs, a static
# x86_64 qgactl, and SHA256SUMS, in $(DIST_DIR) (README.md).
dist:
	rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	@set -e; for a in $(DIST_ARCHES); do \
		$(MAKE) --no-print-directory initramfs ARCH=$$a; \
		sub=$$( [ $$a = x86_64 ] || echo /$$a ); \
		cp target/static$$sub/qga $(DIST_DIR)/qga-$$a; \
		cp target$$sub/initramfs.cpio.gz $(DIST_DIR)/initramfs-$$a.cpio.gz; \
	done
	bash scripts/static/build.sh x86_64 target/static/qgactl-dist qgactl
	cp target/static/qgactl-dist/qgactl $(DIST_DIR)/qgactl-x86_64
	cd $(DIST_DIR) && sha256sum qga-* initramfs-* qgactl-* > SHA256SUMS && cat SHA256SUMS && ls -l

# `make install`: the binary, the systemd unit and the udev rule.
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
install:
	$(CARGO) build --release --bin qga
	install -D -m 0755 target/release/qga $(DESTDIR)$(BINDIR)/qga
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
