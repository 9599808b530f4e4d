# tcpcong's two commands for a newcomer are `make demo` and `make test`;
# both install what they need on a fresh Debian machine (as root).

CARGO ?= cargo
APT_PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make nftables iproute2 iperf3 bpftool util-linux procps python3-pip \
  qemu-system-x86 busybox-static cpio binutils chromium chromium-driver systemd prometheus openjdk-17-jre-headless podman
PY_PACKAGES := pytest pyarrow pandas duckdb polars selenium pyspark maturin
DEBUG_BIN := target/debug/tcpcong
RELEASE_BIN := target/release/tcpcong

.PHONY: deps build release python install deb demo test test-vm lint fixtures bench fuzz clean

PREFIX ?= /usr/local
ZSH_COMPLETIONS ?= $(PREFIX)/share/zsh/site-functions

# Installs only what is missing, so it is a quick no-op on a set-up machine.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@python3 -c "import pytest, pyarrow, pandas, duckdb, polars, selenium, pyspark, maturin" 2>/dev/null || \
	  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages $(PY_PACKAGES)

# Building needs no root and no apt: `make deps` (as root, on Debian)
# installs the build dependencies once.
# Without make's flags: libbpf-sys builds libbpf with make, which would
# take variables given on this command line (`make install DESTDIR=...`)
# as its own and install its library there instead of where cargo looks.
CARGO_ENV := env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL

build:
	$(CARGO_ENV) $(CARGO) build

release:
	$(CARGO_ENV) $(CARGO) build --release

# The Python package (python/): tcpcong's engine as a wheel for CPython
# 3.10 and later (target/wheels), without BPF, libbpf or libelf in it, and
# unpacked into target/python, where the tests import it from.
PY_SITE := $(CURDIR)/target/python
python: deps
	rm -f target/wheels/tcpcong-*.whl
	cd python && $(CARGO_ENV) maturin build --release --quiet -o ../target/wheels
	rm -rf $(PY_SITE)
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target $(PY_SITE) target/wheels/tcpcong-*.whl

# The binary, its man pages (one per command) and shell completions (bash, zsh, fish).
# The binary without its debug info (133 MB -> 22 MB; symbols stay, for
# backtraces): libbpf, libelf and zlib are linked in, so it is one file to
# copy to another host with glibc 2.34 or later.
install: release
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/tcpcong
	strip --strip-debug $(DESTDIR)$(PREFIX)/bin/tcpcong
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(ZSH_COMPLETIONS) $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(RELEASE_BIN) man --dir $(DESTDIR)$(PREFIX)/share/man/man1
	$(RELEASE_BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tcpcong
	$(RELEASE_BIN) completions zsh > $(DESTDIR)$(ZSH_COMPLETIONS)/_tcpcong
	$(RELEASE_BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/tcpcong.fish

# target/debian/tcpcong_VERSION_ARCH.deb: `make install` into a staging
# root, the README and the schemas as its docs, the service and its
# settings (packaging/deb/). The Depends there are dpkg-shlibdeps' for the
# binary on Debian 12 (glibc and libgcc only: libelf and zlib are linked
# in), and adduser
# for postinst. Debian's zsh reads vendor-completions, not site-functions.
# xz -1 packs in 2 s, not the default level's 12 s, for 13 % more bytes.
DEB_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_ROOT := target/debian/root
deb: release
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(DEB_ROOT) PREFIX=/usr ZSH_COMPLETIONS=/usr/share/zsh/vendor-completions
	gzip -9n $(DEB_ROOT)/usr/share/man/man1/*.1
	install -D -m 0644 -t $(DEB_ROOT)/usr/share/doc/tcpcong README.md
	install -D -m 0644 -t $(DEB_ROOT)/usr/share/doc/tcpcong/schemas schemas/*
	chmod -R a+rX,go-w $(DEB_ROOT)
	install -D -m 0644 packaging/deb/tcpcong.service $(DEB_ROOT)/lib/systemd/system/tcpcong.service
	install -D -m 0644 packaging/deb/default $(DEB_ROOT)/etc/default/tcpcong
	install -D -m 0644 packaging/deb/copyright $(DEB_ROOT)/usr/share/doc/tcpcong/copyright
	install -D -m 0644 packaging/deb/conffiles $(DEB_ROOT)/DEBIAN/conffiles
	install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm $(DEB_ROOT)/DEBIAN/
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
	  -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f 1)/" packaging/deb/control > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb -Zxz -z1 --root-owner-group --build $(DEB_ROOT) target/debian/tcpcong_$(DEB_VERSION)_$(DEB_ARCH).deb

# A private lossy namespace, a few seconds of bulk traffic recorded into
# demo.parquet, what analyze makes of it, and demo.html beside it.
demo: deps release
	TCPCONG=$(RELEASE_BIN) lab/demo.sh

# The whole suite, as CI runs it: lint, unit and integration tests (the
# end-to-end ones need root and BPF, and fail without them), Python interop,
# and the VM tests (TCPCONG_VM=0 skips them).
test: deps lint
	$(CARGO) build -p tcpcong-bench
	$(CARGO) test
	$(MAKE) --no-print-directory python
	PYTHONPATH=$(PY_SITE) TCPCONG=$(DEBUG_BIN) python3 -m pytest -q tests/python
	$(MAKE) --no-print-directory deb
	TCPCONG_DEB=target/debian/tcpcong_$(DEB_VERSION)_$(DEB_ARCH).deb python3 -m pytest -q tests/deb
	$(MAKE) --no-print-directory test-vm

# The attach modes on Debian's 6.1 and 5.10 kernels, booted under qemu
# (software emulation; about a minute). Kernels are downloaded once into
# /var/cache/tcpcong-vm (TCPCONG_VM_CACHE elsewhere).
test-vm: deps
	$(CARGO) build
	TCPCONG=$(DEBUG_BIN) python3 -m pytest -q -s tests/vm

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --lib --no-default-features -- -D warnings

# Figures for BENCHMARKS.md, each a ratio measured side by side (as root).
bench: deps python
	$(CARGO) build --release --workspace --bins
	PYTHONPATH=$(PY_SITE) TCPCONG=$(RELEASE_BIN) python3 bench/run.py

# Fuzz the reader and the engine for FUZZ_SECONDS each (cargo-fuzz, with
# RUSTC_BOOTSTRAP so that the stable toolchain builds with sanitizers); new
# inputs that find something go to fuzz/artifacts, the corpus grows in
# fuzz/corpus (committed, and replayed by `make test`).
FUZZ_SECONDS ?= 60
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/reader fuzz/corpus/engine
	cp -n fixtures/*.parquet fuzz/corpus/reader/ 2>/dev/null || true
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run reader corpus/reader -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run engine corpus/engine -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -rss_limit_mb=2048
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz cmin reader corpus/reader && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz cmin engine corpus/engine

fixtures: deps build
	TCPCONG=$(DEBUG_BIN) fixtures/regenerate.sh

clean:
	$(CARGO) clean
