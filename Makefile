# Petrel -- one plain Makefile, read top to bottom.
#
#   make            build everything under build/
#   make test       install what is missing, build, run unit + e2e suites
#   make run        start petreld on 127.0.0.1:2525 with policy/default.lua
#   make asan       unit suites under AddressSanitizer + UBSan (build/asan/)
#   make fuzz       build the libFuzzer targets (clang) under build/fuzz/
#   make bench      bench/compare: petrel-gen -> relay -> petrel-sink, Petrel
#                   beside Postfix, OpenSMTPD and the generator -> sink limit
#   make bench-reception  durable reception only, Petrel beside Postfix
#   make bench-backlog    bench/backlog: a 1,000,000-message backlog, RSS, drain
#   make deps       install the Debian packages (idempotent)
#   make clean

BUILD	?= build
CC	?= cc
# librabbitmq: only its AMQP 0-9-1 frame codec, for net/amqp_client.c (no socket of its own).
PKGS	:= liburing wolfssl libcares luajit jansson libpcre2-8 libzstd librabbitmq

CFLAGS_BASE := -std=gnu11 -g -Wall -Wextra -Werror -D_GNU_SOURCE -I. \
	       $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
OPT	?= -O2
SAN	?=
CFLAGS	?=
ALL_CFLAGS := $(CFLAGS_BASE) $(OPT) $(SAN) $(CFLAGS)
# mimalloc replaces malloc process-wide; the sanitizers bring their own allocator.
MALLOC	:= $(if $(SAN),,-lmimalloc)
ALL_CFLAGS += $(if $(SAN),,-DPT_MIMALLOC)
# libhttp-parser (net/http_server.c) ships no pkg-config file.
LIBS	:= $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser $(MALLOC) -lpthread -lm -lstdc++
# C++ only for policy/toml_shim.cpp (toml++, header-only): same warnings, SAN and OPT.
CXX	?= c++
ALL_CXXFLAGS := -std=c++17 -g -Wall -Wextra -Werror -I. \
	       $(shell pkg-config --cflags luajit 2>/dev/null) $(OPT) $(SAN)

# Modules, in dependency order: core <- spool, net, policy <- shard <- tools, bench.
CORE_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard core/*.c))
SPOOL_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard spool/*.c))
NET_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard net/*.c))
POLICY_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard policy/*.c)) \
	      $(patsubst %.cpp,$(BUILD)/%.o,$(wildcard policy/*.cpp))
SHARD_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(filter-out shard/petreld.c,$(wildcard shard/*.c)))

# One archive per module.  A unit test is named tests/unit/<module>_<what>_test.c
# and links only its module and what that module may depend on, so a module
# builds and tests while another is half-written.
LIB_core   := $(BUILD)/libcore.a
LIB_spool  := $(BUILD)/libspool.a $(LIB_core)
LIB_net    := $(BUILD)/libnet.a $(LIB_core)
LIB_policy := $(BUILD)/libpolicy.a $(LIB_core)
LIB_shard  := $(BUILD)/libshard.a $(BUILD)/libpolicy.a $(BUILD)/libnet.a $(BUILD)/libspool.a $(LIB_core)
LIB_tools  := $(LIB_spool)

UNIT_SRC   := $(wildcard tests/unit/*_test.c)
UNIT_BIN   := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRC))
TOOLS	   := $(BUILD)/petreld $(BUILD)/petrel-spool $(BUILD)/petrel-logs $(BUILD)/petrelctl $(BUILD)/petrel-sink \
	      $(BUILD)/petrel-gen

.PHONY: all test unit e2e run asan fuzz bench bench-reception bench-backlog deps clean
# Small programs the e2e suite runs (tests/tools/), not installed.
TEST_TOOLS := $(BUILD)/tests/tools/metrics-sample $(BUILD)/tests/tools/amqp-publish
all: $(TOOLS) $(UNIT_BIN) $(TEST_TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -MMD -MP -c $< -o $@

# Where `require 'policy-extras.x'` finds the helper modules: this tree's
# policy/, absolute, so petreld finds them from any working directory.
POLICY_DIR ?= $(CURDIR)/policy
$(BUILD)/policy/policy.o: ALL_CFLAGS += -DPETREL_POLICY_DIR='"$(POLICY_DIR)"'

$(BUILD)/libcore.a: $(CORE_OBJ)
$(BUILD)/libspool.a: $(SPOOL_OBJ)
$(BUILD)/libnet.a: $(NET_OBJ)
$(BUILD)/libpolicy.a: $(POLICY_OBJ)
$(BUILD)/libshard.a: $(SHARD_OBJ)
$(BUILD)/lib%.a:
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/petreld: $(BUILD)/shard/petreld.o $(LIB_shard)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/petrel-spool: $(BUILD)/tools/petrel_spool.o $(LIB_tools)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# Reads log segments with libzstd and jansson; core only.
$(BUILD)/petrel-logs: $(BUILD)/tools/petrel_logs.o $(LIB_core)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# The admin API client: a blocking HTTP/1.1 exchange, jansson; core only.
$(BUILD)/petrelctl: $(BUILD)/tools/petrelctl.o $(LIB_core)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# The bench programs stand alone: core and net (TLS) only, no shard; bench/bench_*.c
# holds what both of them use.
$(BUILD)/petrel-sink: $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/sink*.c bench/bench_*.c)) $(LIB_net)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/petrel-gen: $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/gen*.c bench/bench_*.c)) $(LIB_net)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/tools/metrics-sample: $(BUILD)/tests/tools/metrics_sample.o $(LIB_shard)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# net/amqp_client.c against a real RabbitMQ (tests/e2e/test_amqp_client.py).
$(BUILD)/tests/tools/amqp-publish: $(BUILD)/tests/tools/amqp_publish.o $(LIB_net)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

.SECONDEXPANSION:
$(BUILD)/tests/unit/%_test: tests/unit/%_test.c $$(LIB_$$(firstword $$(subst _, ,$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $(filter %.c %.a,$^) $(LIBS) -lcriterion

deps:
	@bash .ci/deps

ASAN_VARS := BUILD=build/asan OPT=-O1 \
	SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# The unit suites run twice: as built, and under ASan + UBSan.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(ASAN_VARS) all
	@ASAN_BUILD=build/asan bash tests/run

unit: all
	@bash tests/run --unit

e2e: all
	@bash tests/run --e2e

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/petreld --policy policy/default.lua

asan:
	@$(MAKE) --no-print-directory $(ASAN_VARS) all
	@BUILD=build/asan bash tests/run --unit

fuzz:
	@$(MAKE) --no-print-directory -f tests/fuzz/Makefile BUILD=build/fuzz

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/compare

bench-reception: deps
	@$(MAKE) --no-print-directory all
	@bash bench/reception

bench-backlog: deps
	@$(MAKE) --no-print-directory all
	@bench/backlog

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
