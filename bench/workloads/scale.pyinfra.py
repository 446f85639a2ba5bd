# The --scale workload for pyinfra: the same work as scale.yml (bootstrap and ansible-playbook),
# the four tasks of workload (a) per inventory host, every path under /srv/bench/<inventory
# name>/ and owned by root (many inventory hosts share one test host's file system).
# Run from bench/workloads (paths are relative to it).
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

base = f"/srv/bench/{host.name}"

files.directory(
    name="A directory of the host's own",
    path=base,
    user="root",
    group="root",
    mode="755",
)

# Touches only a missing file (the file's times are left alone), as `state: touch` with
# preserved times in scale.yml.
files.file(
    name="Add a log file",
    path=f"{base}/bench.log",
    user="root",
    group="root",
    mode="640",
)

files.put(
    name="Copy a file",
    src="files/test_file.txt",
    dest=f"{base}/test_file.txt",
    user="root",
    group="root",
    mode="644",
)

# The guard the other two tools write as `creates:`: a fact read while planning.
if not host.get_fact(File, path=f"{base}/shell.out"):
    server.shell(
        name="Run some shell",
        commands=[f'echo "hi!" > {base}/shell.out'],
    )
