# Workload (a) for pyinfra: the four tasks of pyinfra's published comparison
# (github.com/Fizzadar/pyinfra-performance/tests/pyinfra-deploy/deploy.py).
# Same work as four-tasks.yml (bootstrap and ansible-playbook).
# Run from bench/workloads (paths are relative to it).
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

server.user(
    name="Add a user",
    user="bench",
    home="/home/bench",
    shell="/bin/bash",
    create_home=True,
)

files.file(
    name="Add a log file",
    path="/var/log/bench.log",
    user="bench",
    group="bench",
    mode="640",
)

files.put(
    name="Copy a file",
    src="files/test_file.txt",
    dest="/home/bench/test_file.txt",
    user="bench",
    group="bench",
    mode="644",
)

# The guard the other two tools write as `creates:`: a fact read while planning.
if not host.get_fact(File, path="/home/bench/shell.out"):
    server.shell(
        name="Run some shell",
        commands=['echo "hi!" > /home/bench/shell.out'],
    )
