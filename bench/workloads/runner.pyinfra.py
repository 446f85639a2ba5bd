# Workload (b) for pyinfra: same work as runner.yml, which bootstrap and
# ansible-playbook run (the built-in runner playbook with docker.io from the
# distribution, the gitlab-runner binary uploaded, no GitLab registration, a
# static config.toml). Handlers are the operations at the end, run only when
# what notifies them changed (`_if`). Templates render with Ansible's
# trim_blocks, as the other two tools do. Run from bench/workloads.
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

TEMPLATE_VARS = dict(
    docker_log_max_size="10m",
    docker_log_max_file=3,
    docker_daemon_options={},
    gitlab_runner_install="upload",
    gitlab_runner_home="/home/gitlab-runner",
    gitlab_runner_path="/usr/local/bin/gitlab-runner",
    runner_shutdown_timeout=0,
)
JINJA = {"trim_blocks": True}

apt.packages(
    name="Docker Engine (distribution)",
    packages=["docker.io"],
    update=True,
    cache_time=3600,
)
files.directory(name="/etc/docker", path="/etc/docker", user="root", group="root", mode="755")
daemon_json = files.template(
    name="Docker daemon settings (log rotation)",
    src="templates/daemon.json.j2",
    dest="/etc/docker/daemon.json",
    user="root",
    group="root",
    mode="644",
    jinja_env_kwargs=dict(JINJA),
    **TEMPLATE_VARS,
)
systemd.service(name="Docker enabled and running", service="docker", running=True, enabled=True)
server.user(
    name="gitlab-runner user, in the docker group",
    user="gitlab-runner",
    groups=["docker"],
    home="/home/gitlab-runner",
    shell="/bin/bash",
    create_home=True,
)
binary = files.put(
    name="gitlab-runner binary, uploaded from the controller",
    src="files/gitlab-runner",
    dest="/usr/local/bin/gitlab-runner",
    user="root",
    group="root",
    mode="755",
)
unit = files.template(
    name="gitlab-runner service unit",
    src="templates/gitlab-runner.service.j2",
    dest="/etc/systemd/system/gitlab-runner.service",
    user="root",
    group="root",
    mode="644",
    jinja_env_kwargs=dict(JINJA),
    **TEMPLATE_VARS,
)
files.directory(name="/etc/gitlab-runner", path="/etc/gitlab-runner", user="root", group="root", mode="700")
files.directory(name="builds folder shared with jobs", path="/builds", user="root", group="root", mode="755")
files.directory(name="cache folder shared with jobs", path="/cache", user="root", group="root", mode="755")
files.put(
    name="config.toml (static)",
    src="files/config.toml",
    dest="/etc/gitlab-runner/config.toml",
    user="root",
    group="root",
    mode="600",
)
systemd.daemon_reload(name="systemd units reloaded (unit changed)", _if=unit.did_change)
systemd.service(name="gitlab-runner enabled and running", service="gitlab-runner", running=True, enabled=True)

# handlers
systemd.service(name="restart docker", service="docker", restarted=True, _if=daemon_json.did_change)
systemd.service(
    name="restart gitlab-runner",
    service="gitlab-runner",
    restarted=True,
    daemon_reload=True,
    _if=any_changed(binary, unit),
)
