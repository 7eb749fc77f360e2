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
	$(CARGO) test --all-targets -- --test-threads=4

unit:
	$(CARGO) test --lib

run: release
	./target/release/qga -m unix-listen -p $(SOCK) -t /tmp

clean:
	$(CARGO) clean
