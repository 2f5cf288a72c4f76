# Containers (docker-compose.yml) and the offline checks of the deployment
# files. Included by the top-level Makefile; also usable alone:
#   make -f mk/docker.mk lint-deploy
#
# Every compose command is scoped to this project (-p hook-slinger): nothing
# here touches other containers, images or volumes on the host.

HS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

DOCKER_COMPOSE ?= docker compose
COMPOSE_PROJECT ?= hook-slinger
HS_COMPOSE := $(DOCKER_COMPOSE) -p $(COMPOSE_PROJECT) --project-directory $(HS_ROOT) -f $(HS_ROOT)/docker-compose.yml
# How much history the *_logs targets show before following.
LOG_TAIL ?= 200

# Under target/: ignored by git like every build output, removed by `cargo clean`.
DEPLOY_VENV ?= $(HS_ROOT)/target/lint-deploy/venv
DEPLOY_PYTHON ?= python3
DEPLOY_REQUIREMENTS := $(HS_ROOT)/deploy/checks/requirements.txt

.PHONY: start_servers start-servers stop_servers stop-servers \
	worker_scale worker-scale app_logs app-logs worker_logs worker-logs \
	monitor_logs monitor-logs lint-deploy

## start_servers: build the image and start redis, app, worker and monitor
start_servers start-servers:
	@test -f $(HS_ROOT)/.env || { \
		echo "No .env: run 'cp .env.example .env' and set API_TOKEN first." >&2; exit 1; }
	$(HS_COMPOSE) up --detach --build --wait

## stop_servers: stop and remove this project's containers and network (the
## Redis volume stays; `docker compose -p hook-slinger down --volumes` drops it)
stop_servers stop-servers:
	$(HS_COMPOSE) down --remove-orphans

## worker_scale n=3: run n worker containers
worker_scale worker-scale:
	@case "$(n)" in ''|*[!0-9]*) echo "usage: make worker_scale n=3" >&2; exit 2;; esac
	$(HS_COMPOSE) up --detach --no-deps --no-recreate --scale worker=$(n) worker

## app_logs / worker_logs / monitor_logs: follow the logs (all worker replicas)
app_logs app-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) app

worker_logs worker-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) worker

monitor_logs monitor-logs:
	$(HS_COMPOSE) logs --follow --tail=$(LOG_TAIL) monitor

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
ifeq ($(.DEFAULT_GOAL),start_servers)
.DEFAULT_GOAL :=
endif
