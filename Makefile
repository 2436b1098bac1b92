# confide — build with GNU make + pkg-config (why: docs/architecture.md §Build).
#
#   make                 libconfide.a and the four programs
#   make check           every test: unit (cmocka), valgrind on unit tests,
#                        integration (real daemons over HTTP), end-to-end
#                        (openai npm client through nginx to llama-server)
#   make check SANITIZE=1 [CC=clang]   the same under ASan+UBSan
#   make fuzz            libFuzzer targets (clang)
#   make fuzz-smoke      each fuzzer for FUZZ_SECONDS on its seed corpus
#   make bench           benchmarks (ratios against raw baselines)
#   make demo            the whole confidential deployment on this machine
#   make deps            install missing Debian packages (scripts/deps.sh)
#
# Sources are found by wildcard: a new lib/<module>/x.c, tests/unit/test_x.c or
# fuzz/fuzz_x.c is picked up without editing this file.

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
CLANG ?= clang

SANITIZE ?=
ifeq ($(SANITIZE),1)
O ?= build/san-$(notdir $(CC))
else
O ?= build/default
endif

PKGS := openssl libevent libevent_openssl libevent_pthreads libcurl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wformat-security -Wvla -Wpointer-arith \
        -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual -Wundef -Wwrite-strings \
        -Wimplicit-fallthrough -Wno-unused-parameter
HARDEN := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2 -fno-strict-overflow \
          -fno-delete-null-pointer-checks
# OpenSSL through EVP only: hide every API deprecated in 3.0.
OSSL := -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED

OPT ?= -O2
CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=gnu11 $(WARN) $(HARDEN) $(OSSL) -Iinclude -Ilib -Itests/helper $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
LDFLAGS_HARDEN := -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack

ifeq ($(SANITIZE),1)
# FORTIFY and ASan do not mix well; O1 keeps stacks readable.
HARDEN := -fstack-protector-strong -fPIE
ALL_CFLAGS += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_HARDEN += -fsanitize=address,undefined
endif

LIBS := $(PKG_LIBS) -lpthread -lm

LIB_SRCS := $(sort $(wildcard lib/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/%.o)
LIB := $(O)/libconfide.a

# program name -> source folder
PROGRAMS := confide-proxy:proxy confide-as:as confide-worker:worker confide:cli
prog_dir = $(word 2,$(subst :, ,$(1)))
prog_name = $(word 1,$(subst :, ,$(1)))
PROG_BINS := $(foreach p,$(PROGRAMS),$(if $(wildcard $(call prog_dir,$(p))/*.c),$(O)/bin/$(call prog_name,$(p))))

TEST_HELPER_SRCS := $(wildcard tests/helper/*.c)
TEST_HELPER_OBJS := $(TEST_HELPER_SRCS:%.c=$(O)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)

INTEG_SRCS := $(sort $(wildcard tests/integration/itest_*.c))
INTEG_BINS := $(INTEG_SRCS:tests/integration/%.c=$(O)/tests/%)

BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(O)/bin/confide-bench

FUZZ_O := build/fuzz
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(FUZZ_O)/%)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_O)/%.o)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Iinclude -Ilib -Itests/helper $(PKG_CFLAGS) $(OSSL) -Wall -Wextra -Werror -Wno-unused-parameter \
               -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 20

# Tests find the shared hardware and crypto vectors here (never copied in).
CONFIDE_VECTORS ?= $(abspath ../shared/vectors)
export CONFIDE_VECTORS
export CONFIDE_BUILD := $(abspath $(O))

.PHONY: all lib programs check check-unit check-valgrind check-integration check-e2e \
        fuzz fuzz-smoke bench demo deps llama clean
.DEFAULT_GOAL := all

all: lib programs $(UNIT_BINS) $(INTEG_BINS) $(BENCH_BIN)
lib: $(LIB)
programs: $(PROG_BINS)

# V=1 prints full command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)ar rcs $@ $^

define PROGRAM_RULE
$(O)/bin/$(call prog_name,$(1)): $(patsubst %.c,$(O)/%.o,$(wildcard $(call prog_dir,$(1))/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_CFLAGS) $$(LDFLAGS_HARDEN) -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call PROGRAM_RULE,$(p))))

$(O)/tests/test_%: $(O)/tests/unit/test_%.o $(TEST_HELPER_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS_HARDEN) -o $@ $^ $(CMOCKA_LIBS) $(LIBS)

$(O)/tests/itest_%: $(O)/tests/integration/itest_%.o $(TEST_HELPER_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS_HARDEN) -o $@ $^ $(CMOCKA_LIBS) $(LIBS)

$(BENCH_BIN): $(BENCH_SRCS:%.c=$(O)/%.o) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS_HARDEN) -o $@ $^ $(LIBS)

# ---- tests ---------------------------------------------------------------

check: all
	@scripts/run-tests.sh unit $(UNIT_BINS)
ifneq ($(SANITIZE),1)
	@scripts/run-tests.sh valgrind $(UNIT_BINS)
endif
	@scripts/run-tests.sh integration $(INTEG_BINS)
	@scripts/run-tests.sh e2e

check-unit: all
	@scripts/run-tests.sh unit $(UNIT_BINS)

check-valgrind: all
	@scripts/run-tests.sh valgrind $(UNIT_BINS)

check-integration: all
	@scripts/run-tests.sh integration $(INTEG_BINS)

check-e2e: all
	@scripts/run-tests.sh e2e

# ---- fuzzing (clang + libFuzzer) -------------------------------------------

$(FUZZ_O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_O)/libconfide.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(FUZZ_O)/fuzz_%: $(FUZZ_O)/fuzz/fuzz_%.o $(FUZZ_O)/libconfide.a
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz: $(FUZZ_BINS)

fuzz-smoke: fuzz
	@scripts/fuzz-smoke.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# ---- the rest -------------------------------------------------------------

bench: all
	$(BENCH_BIN)
	scripts/bench-chain.sh

demo: all
	scripts/demo.sh

deps:
	scripts/deps.sh

llama:
	scripts/llama.sh

clean:
	rm -rf build

# Keep objects between runs (pattern-rule intermediates would be deleted).
.SECONDARY:

-include $(shell find $(O) $(FUZZ_O) -name '*.d' 2>/dev/null)
