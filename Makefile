# Builds and installs libtinymalloc for C and C++ users.
#
#   make                      cargo build --release
#   make install              into PREFIX (default /usr/local)
#   make install PREFIX=/opt/tm DESTDIR=/tmp/stage
#   make uninstall            removes what install put there
#
# Installs lib/libtinymalloc.so, lib/libtinymalloc.a, include/tinymalloc.h
# and lib/pkgconfig/tinymalloc.pc (with the right prefix).
# PROFILE picks the cargo profile to build and install (default release).

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
BINDIR     ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=
CARGO      ?= cargo
PROFILE    ?= release
TARGET_DIR ?= target
INSTALL    ?= install

# cargo's "dev" profile builds into target/debug.
BUILD_DIR := $(TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' capi/Cargo.toml | head -n 1)

.PHONY: all build install uninstall test clean

all: build

build:
	$(CARGO) build --profile $(PROFILE) --target-dir $(TARGET_DIR)

test:
	scripts/test.sh

$(BUILD_DIR)/tinymalloc.pc: tinymalloc.pc.in build
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    tinymalloc.pc.in > $@

install: build $(BUILD_DIR)/tinymalloc.pc
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 $(BUILD_DIR)/tinymalloc $(DESTDIR)$(BINDIR)/tinymalloc
	$(INSTALL) -m 755 $(BUILD_DIR)/libtinymalloc.so $(DESTDIR)$(LIBDIR)/libtinymalloc.so
	$(INSTALL) -m 644 $(BUILD_DIR)/libtinymalloc.a $(DESTDIR)$(LIBDIR)/libtinymalloc.a
	$(INSTALL) -m 644 include/tinymalloc.h $(DESTDIR)$(INCLUDEDIR)/tinymalloc.h
	$(INSTALL) -m 644 $(BUILD_DIR)/tinymalloc.pc $(DESTDIR)$(PKGCONFIGDIR)/tinymalloc.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tinymalloc \
	      $(DESTDIR)$(LIBDIR)/libtinymalloc.so $(DESTDIR)$(LIBDIR)/libtinymalloc.a \
	      $(DESTDIR)$(INCLUDEDIR)/tinymalloc.h $(DESTDIR)$(PKGCONFIGDIR)/tinymalloc.pc

clean:
	$(CARGO) clean --target-dir $(TARGET_DIR)
