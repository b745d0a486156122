# custos: top-level Makefile.  The README's two commands are `make run` and
# `make test`; everything else here serves them.
#
#   make deps     install missing Debian packages (apt-get; needs root)
#   make build    build the extension and the HTTP gateway
#   make install  install the extension into PostgreSQL 15 (needs root)
#   make run      a local cluster under .run/ with a demo; `make stop` ends it
#   make test     pg_regress, isolation and crash tests on throwaway clusters
#   make bench    the benchmarks of bench/, printed as ratios

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PG_CONFIG

.PHONY: all deps build install run stop test installcheck bench clean

all: build

deps:
	@tools/deps.sh

build: deps
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG)
	$(MAKE) -C gateway

install: build
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) install

run: install
	@tools/run.sh start

stop:
	@tools/run.sh stop

test: install
	@tools/test.sh

bench: install
	@bench/run.sh

clean:
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) clean
	$(MAKE) -C gateway clean
	rm -rf build
