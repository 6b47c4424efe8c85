# certfleet build. `make` builds ./certfleet; `make test` runs every unit and
# integration test and ends with "N passed, N failed"; `make demo` runs the
# example fleet against a local pebble CA and real sshd+nginx hosts.
PKGS     := libuv libssh2 openssl libcurl yaml-0.1 jansson sqlite3
CC       ?= cc
PREFIX   ?= /usr/local
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes \
            -Wstrict-prototypes -Wpointer-arith -Wno-unused-parameter -Werror
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARN)
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS     := $(wildcard orchestrator/*.c orchestrator/pipeline/*.c)
OBJDIR   := build/obj$(if $(filter 1,$(SANITIZE)),-san)
GENDIR   := build/gen
OBJS     := $(patsubst orchestrator/%.c,$(OBJDIR)/%.o,$(SRCS))
LIBOBJS  := $(filter-out $(OBJDIR)/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,build/unit$(if $(filter 1,$(SANITIZE)),-san)/%,$(UNIT_SRCS))

# Debian packages needed to build, test and run the demo fleet.
DEB_PKGS := build-essential pkg-config libuv1-dev libssh2-1-dev libssl-dev \
            libcurl4-openssl-dev libyaml-dev libjansson-dev libsqlite3-dev \
            libcmocka-dev openssh-server openssh-client nginx-light pebble \
            ansible python3 python3-aiosmtpd python3-yaml python3-cryptography prometheus curl openssl sqlite3 \
            iproute2 procps clang-format systemd chromium chromium-driver \
            poppler-utils sudo jq xxd bc time util-linux shellcheck valgrind \
            clang libclang-rt-14-dev

.PHONY: all deps bench-deps test unit integration demo format format-check install clean check-deps fuzz

all: certfleet

# Install what is missing; a no-op (no apt-get) when everything is present.
check-deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "certfleet: installing:$$missing"; $(MAKE) --no-print-directory deps; fi

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $(DEB_PKGS)

# The peers bench/ measures against (certbot, lego; ansible is in DEB_PKGS).
bench-deps: check-deps
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends certbot lego

# V=1 shows the full commands
Q := $(if $(filter 1,$(V)),,@)

# Switching between plain and SANITIZE=1 builds relinks ./certfleet.
MODE_STAMP := build/mode-$(if $(filter 1,$(SANITIZE)),san,plain)
$(MODE_STAMP):
	@mkdir -p build && rm -f build/mode-* && touch $@

certfleet: $(OBJS) $(MODE_STAMP)
	@$(if $(Q),echo "  LINK $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(OBJS) $(PKG_LIBS) -lm

$(OBJDIR)/%.o: orchestrator/%.c $(wildcard orchestrator/*.h orchestrator/pipeline/*.h) | $(OBJDIR)
	@$(if $(Q),echo "  CC   $<")
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Iorchestrator -I$(GENDIR) $(PKG_CFLAGS) -c -o $@ $<

# The remote script is a shell file (shellchecked by tests/run) embedded as
# a NUL-terminated char array.  Comment lines are dropped: the script goes
# on every batch's command line.  It travels inside single quotes, so one
# in it is a build error.
$(GENDIR)/remote_sh.h: orchestrator/remote.sh Makefile
	@mkdir -p $(GENDIR)
	@$(if $(Q),echo "  GEN  $@")
	$(Q)if grep -n "'" $<; then echo "$<: a single quote cannot travel inside sh -c '...'" >&2; exit 1; fi
	$(Q){ echo "/* generated from $< by the Makefile */"; \
	  echo "static const char remote_script[] = {"; \
	  sed '/^#/d' $< | od -An -v -tx1 | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo "0x00};"; } >$@.tmp && mv $@.tmp $@

$(OBJDIR)/remote.o: $(GENDIR)/remote_sh.h

$(OBJDIR):
	@mkdir -p $@

build/unit$(if $(filter 1,$(SANITIZE)),-san)/%: tests/unit/%.c $(LIBOBJS) $(wildcard orchestrator/*.h) $(GENDIR)/remote_sh.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST $@")
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -Iorchestrator -I$(GENDIR) -o $@ $< $(LIBOBJS) $(LDFLAGS) $(PKG_LIBS) $(shell pkg-config --libs cmocka) -lm

unit-bins: $(UNIT_BINS)

# libFuzzer targets (tests/fuzz/fuzz_*.c): the certfleet objects built
# again by clang under ASan+UBSan with coverage, one binary per target in
# build/fuzz/.  tests/run runs each briefly, bench/fuzz for long.
FUZZ_CC      := clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wno-unused-parameter $(FUZZ_SAN)
FUZZ_OBJDIR  := build/fuzz/obj
FUZZ_OBJS    := $(patsubst $(OBJDIR)/%,$(FUZZ_OBJDIR)/%,$(LIBOBJS))
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))

$(FUZZ_OBJDIR)/%.o: orchestrator/%.c $(wildcard orchestrator/*.h orchestrator/pipeline/*.h) $(GENDIR)/remote_sh.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Iorchestrator -I$(GENDIR) $(PKG_CFLAGS) -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	@$(if $(Q),echo "  FUZZ $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Iorchestrator -I$(GENDIR) $(PKG_CFLAGS) -o $@ $< $(FUZZ_OBJS) $(PKG_LIBS) -lm

.SECONDARY: $(FUZZ_OBJS)

fuzz: $(FUZZ_BINS)

test: check-deps
	@$(MAKE) --no-print-directory certfleet unit-bins SANITIZE=$(SANITIZE)
	@SANITIZE=$(SANITIZE) tests/run

unit: certfleet unit-bins
	@SANITIZE=$(SANITIZE) tests/run --unit-only

demo: check-deps
	@$(MAKE) --no-print-directory certfleet
	@tests/fleet/demo

format:
	clang-format -i orchestrator/*.c orchestrator/*.h orchestrator/pipeline/*.[ch] tests/unit/*.c

format-check:
	@clang-format --dry-run --Werror orchestrator/*.c orchestrator/*.h orchestrator/pipeline/*.[ch] tests/unit/*.c && echo "format ok"

install: certfleet
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/certfleet $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 certfleet $(DESTDIR)$(PREFIX)/bin/certfleet
	cp -R roles $(DESTDIR)$(PREFIX)/share/certfleet/
	install -m 0644 man/certfleet.1 $(DESTDIR)$(PREFIX)/share/man/man1/certfleet.1

clean:
	rm -rf build certfleet
