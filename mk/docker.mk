# Containers (docker-compose.yml) and the offline checks of the deployment
# files. Included by the top-level Makefile; also usable alone:
#   make -f mk/docker.mk lint-deploy
#
# Every compose command is scoped to this project (-p hook-slinger): nothing
# here touches other containers, images or volumes on the host.

HS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

# Compose v2 (the `docker compose` plugin) where it is installed, else the
# standalone v1 `docker-compose` (Debian's package). Every target below works
# with both: `up --wait`, which v1 lacks, is scripts/compose-wait.sh.
DOCKER_COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
COMPOSE_PROJECT ?= hook-slinger
# The image tag docker-compose.yml uses: HOOK_SLINGER_TAG from the
# environment, else from .env, else `local`.
HOOK_SLINGER_TAG ?= $(or $(shell sed -n 's/^HOOK_SLINGER_TAG=//p' $(HS_ROOT)/.env 2>/dev/null | tail -n 1),local)
# compose-test adds its own file and project name to these.
COMPOSE_FILES ?= $(HS_ROOT)/docker-compose.yml
HS_COMPOSE = HOOK_SLINGER_TAG=$(HOOK_SLINGER_TAG) $(DOCKER_COMPOSE) -p $(COMPOSE_PROJECT) --project-directory $(HS_ROOT) $(addprefix -f ,$(COMPOSE_FILES))
# How long start_servers and worker_scale wait for healthy containers (s).
COMPOSE_WAIT ?= 180
# How much history the *_logs targets show before following.
LOG_TAIL ?= 200

# Under target/: ignored by git like every build output, removed by `cargo clean`.
DEPLOY_VENV ?= $(HS_ROOT)/target/lint-deploy/venv
DEPLOY_PYTHON ?= python3
DEPLOY_REQUIREMENTS := $(HS_ROOT)/deploy/checks/requirements.txt

.PHONY: base_images base-images image start_servers start-servers stop_servers stop-servers \
	worker_scale worker-scale app_logs app-logs worker_logs worker-logs \
	monitor_logs monitor-logs compose-test compose_test compose-env lint-deploy

## base_images: only for a Docker engine that cannot pull from a registry:
## local stand-ins, made with debootstrap, for the images the Dockerfile and
## docker-compose.yml name (seconds once they exist)
base_images base-images:
	$(HS_ROOT)/scripts/base-images.sh

## image: build hook-slinger:$(HOOK_SLINGER_TAG) with BuildKit (start_servers does it)
image:
	$(HS_ROOT)/scripts/docker-build.sh -t hook-slinger:$(HOOK_SLINGER_TAG) $(HS_ROOT)

compose-env:
	@test -f $(HS_ROOT)/.env || { \
		echo "No .env: run 'cp .env.example .env' and set API_TOKEN first." >&2; exit 1; }

## start_servers: build the image and start redis, app, worker and monitor,
## then wait until all are healthy
start_servers start-servers: compose-env image
	$(HS_COMPOSE) up --detach --no-build
	@$(HS_ROOT)/scripts/compose-wait.sh $(COMPOSE_PROJECT) $(COMPOSE_WAIT)

## stop_servers: stop and remove this project's containers and network (the
## Redis volume stays; `docker compose -p hook-slinger down --volumes` drops it)
stop_servers stop-servers:
	$(HS_COMPOSE) down --remove-orphans

## worker_scale n=3: run n worker containers
worker_scale worker-scale:
	@case "$(n)" in ''|*[!0-9]*) echo "usage: make worker_scale n=3" >&2; exit 2;; esac
	$(HS_COMPOSE) up --detach --no-deps --no-recreate --no-build --scale worker=$(n) worker
	@$(HS_ROOT)/scripts/compose-wait.sh $(COMPOSE_PROJECT) $(COMPOSE_WAIT)

## app_logs / worker_logs / monitor_logs: follow the logs (all worker replicas)
app_logs app-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) app

worker_logs worker-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) worker

monitor_logs monitor-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) monitor

## compose-test: the compose stack end to end under its own project name
## (three workers, a killed worker, a Redis restart); skipped, saying so,
## when no Docker engine answers
compose-test compose_test:
	@$(HS_ROOT)/tests/compose/compose_test.py

## lint-deploy: check Dockerfile, compose file and Kubernetes manifests offline
lint-deploy: $(DEPLOY_VENV)/.installed
	$(DEPLOY_VENV)/bin/python $(HS_ROOT)/deploy/checks/lint_deploy.py

# Reinstalled whenever requirements.txt changes.
$(DEPLOY_VENV)/.installed: $(DEPLOY_REQUIREMENTS)
	rm -rf $(DEPLOY_VENV)
	$(DEPLOY_PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(DEPLOY_REQUIREMENTS)
	touch $@

# Included before the main Makefile's own targets, this file must not become
# the default goal: a bare `make` should never start containers.
ifeq ($(.DEFAULT_GOAL),base_images)
.DEFAULT_GOAL :=
endif
